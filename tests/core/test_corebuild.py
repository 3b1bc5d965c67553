"""The compiled core runs only while it matches its sources (graphflow/corebuild.py)."""
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import graphflow
from graphflow.corebuild import COMPILED_FROM, CORE_MODULES, source_digest, stale_sources

EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_build(folder: Path) -> None:
    """Sources, a file where each compiled module would be, and the build's record of the sources."""
    for name in CORE_MODULES:
        (folder / f"{name}.py").write_text(f"NAME = {name!r}\n")
        (folder / f"{name}{EXTENSION}").write_bytes(b"")
    (folder / COMPILED_FROM).write_text(json.dumps({f"{name}.py": source_digest(folder / f"{name}.py")
                                                    for name in CORE_MODULES}))


def test_a_build_matching_its_sources_is_current(tmp_path):
    fake_build(tmp_path)
    assert stale_sources(tmp_path) == []


def test_an_edited_source_makes_the_build_stale(tmp_path):
    fake_build(tmp_path)
    with open(tmp_path / "ports.py", "a") as source:
        source.write("# edited\n")
    assert stale_sources(tmp_path) == ["ports.py"]


def test_a_build_without_its_record_is_stale_and_no_build_is_never_stale(tmp_path):
    fake_build(tmp_path)
    (tmp_path / COMPILED_FROM).unlink()
    assert stale_sources(tmp_path) == [f"{name}.py" for name in CORE_MODULES]
    for name in CORE_MODULES:
        (tmp_path / f"{name}{EXTENSION}").unlink()
    assert stale_sources(tmp_path) == []


@pytest.mark.skipif(not graphflow.COMPILED, reason="needs the compiled core (GRAPHFLOW_COMPILE=1 pip install -e .)")
def test_an_edited_checkout_runs_the_core_from_its_sources_and_says_so(tmp_path):
    package = Path(graphflow.__file__).parent
    shutil.copytree(package, tmp_path / "graphflow", ignore=shutil.ignore_patterns("__pycache__"))
    for shared in package.parent.glob("*__mypyc*"):  # the compiled modules' common library
        shutil.copy(shared, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    probe = "import graphflow, graphflow.ports; print(graphflow.COMPILED, graphflow.ports.__file__)"

    def run():
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                              cwd=tmp_path, check=True)

    current = run()
    assert current.stdout.split()[0] == "True" and "interpreted" not in current.stderr
    with open(tmp_path / "graphflow" / "scheduler.py", "a") as source:
        source.write("# edited\n")
    edited = run()
    compiled, ports_file = edited.stdout.split()
    assert compiled == "False" and ports_file == str(tmp_path / "graphflow" / "ports.py")  # all of the core
    assert "scheduler.py changed since it was built" in edited.stderr and "pip install -e ." in edited.stderr
