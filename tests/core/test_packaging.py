"""The package as users install it: a wheel, outside the checkout."""
import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_installed_wheel_validates_and_runs_an_app_outside_the_checkout(tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # the wheel's graphflow only
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
                   check=True, env=env, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("graphflow-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")  # pure Python: installs on a Jetson with no compiler
    names = zipfile.ZipFile(wheel).namelist()
    assert "graphflow/schemas/app.schema.json" in names  # apps cannot be validated without it
    assert "graphflow/viewer/static/index.html" in names
    assert "graphflow/packs/openpose/paf.py" in names
    top_level = {name.split("/")[0] for name in names if not name.startswith("graphflow-")}
    assert top_level == {"graphflow"}  # no generic top-level package such as "nodes"
    assert not [name for name in names if name.endswith((".so", ".pyd", ".c"))]

    venv = tmp_path / "venv"  # the dependencies come from this interpreter's site-packages
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Where this interpreter is itself a venv, --system-site-packages reaches only the base
    # interpreter's: add this one's site-packages after the new venv's own, as that flag would.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    outer = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (Path(purelib) / "outer_site_packages.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({path!r})" for path in outer) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, env=env)
    where = subprocess.run([str(python), "-c", "import graphflow; print(graphflow.__file__)"], check=True,
                           capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert str(venv) in where

    numbers = tmp_path / "numbers.jsonl"
    run = subprocess.run([str(venv / "bin" / "graphflow"), "run", str(REPO / "apps" / "demo.app.json"),
                          "--set", f"sink/writer/path={numbers}", "--max-ticks", "5", "--no-viewer"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert len([json.loads(line) for line in numbers.read_text().splitlines()]) == 5
