"""The .gfpkg package: what it holds, its hashes, and --check (hashes; the wheelhouse resolved
offline by pip for the target's platform and Python)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from graphflow.deploy.package import build_graphflow_wheel, build_package, check_package
from tests.conftest import MODELS, REPO
from tests.deploy.wheels import fake_target_wheel

MODEL = MODELS / "openpose_mobilenet_thin.onnx"


def graphflow(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), GRAPHFLOW_MODEL_PATH=str(MODELS))
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


def members(package: Path) -> dict[str, bytes]:
    with tarfile.open(package) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


@pytest.mark.timeout(120)
def test_the_package_holds_the_composed_app_the_wheel_the_model_once_and_pins(openpose_packages):
    files = members(openpose_packages["1.0.0"])
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["app"] == {"name": "openpose", "version": "1.0.0", "file": "app/openpose.app.json"}
    assert manifest["target"] == "linux-x86_64" and manifest["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    model_hash = hashlib.sha256(MODEL.read_bytes()).hexdigest()  # computed here, not by the package code
    assert manifest["models"] == {"openpose_mobilenet_thin.onnx": model_hash}
    assert sorted(files) == sorted(["app/openpose.app.json", "app/openpose_decoder.subgraph.json",
                                    f"models/{model_hash}", "requirements.txt",
                                    "wheels/graphflow-0.1.0-py3-none-any.whl"])
    assert set(manifest["files"]) == set(files)
    for name, data in files.items():
        assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    app = json.loads(files["app/openpose.app.json"])
    assert app["config"]["inference"]["tensor_rt_inference"]["model_file_path"] == "openpose_mobilenet_thin.onnx"
    assert {"name": "decoder", "subgraph": "openpose_decoder.subgraph.json"} in app["graph"]["nodes"]
    pins = files["requirements.txt"].decode().split()
    from importlib.metadata import version
    assert f"numpy=={version('numpy')}" in pins and f"onnxruntime=={version('onnxruntime')}" in pins
    with zipfile.ZipFile(io.BytesIO(files["wheels/graphflow-0.1.0-py3-none-any.whl"])) as wheel:
        names = wheel.namelist()
    assert "graphflow/packs/openpose/__init__.py" in names and "graphflow/deploy/agent.py" in names  # packs ship inside
    assert not [n for n in names if n.endswith((".so", ".pyd"))]  # pure Python: runs on aarch64 too


@pytest.mark.timeout(120)
def test_a_model_used_twice_is_stored_once_and_packaging_is_reproducible(tmp_path, graphflow_wheel, model_path):
    app = json.loads((REPO / "apps" / "openpose.app.json").read_text())
    app["graph"]["nodes"].append({"name": "second", "components": [{"name": "infer", "type": "ml.TensorRTInference"}]})
    app["graph"]["edges"].append({"source": "encoder/color_camera_encoder/tensor", "target": "second/infer/input"})
    app["config"]["second"] = {"infer": {"model_file_path": str(MODEL)}}  # the same file by its absolute path
    (tmp_path / "two.app.json").write_text(json.dumps(app))
    (tmp_path / "openpose_decoder.subgraph.json").write_text((REPO / "apps" / "openpose_decoder.subgraph.json").read_text())
    quiet = dict(target="linux-x86_64", graphflow_wheel=graphflow_wheel, progress=lambda _: None)
    first = build_package(tmp_path / "two.app.json", tmp_path / "a", **quiet)
    second = build_package(tmp_path / "two.app.json", tmp_path / "b", **quiet)
    assert first.read_bytes() == second.read_bytes()
    # The graphflow wheel itself is reproducible: a redeploy uploads it only when graphflow changed.
    wheels = [build_graphflow_wheel(tmp_path / f"wheel{i}", progress=lambda _: None) for i in (1, 2)]
    assert wheels[0].read_bytes() == wheels[1].read_bytes()
    files = members(first)
    assert len([n for n in files if n.startswith("models/")]) == 1
    packaged = json.loads(files["app/two.app.json"])
    assert packaged["config"]["second"]["infer"]["model_file_path"] == "openpose_mobilenet_thin.onnx"


def rewrite(package: Path, out: Path, change) -> Path:
    """A copy of the package with ``change(name, data) -> (name, data) | None`` applied to each member."""
    with tarfile.open(package) as tar, tarfile.open(out, "w") as new:
        for member in tar:
            changed = change(member.name, tar.extractfile(member).read())
            if changed is None:
                continue
            info = tarfile.TarInfo(changed[0])
            info.size = len(changed[1])
            new.addfile(info, io.BytesIO(changed[1]))
    return out


@pytest.mark.timeout(120)
def test_check_finds_a_changed_a_missing_an_extra_and_an_unsafe_file(openpose_packages, tmp_path):
    package = openpose_packages["1.0.0"]
    ok = graphflow("package", "--check", str(package))
    assert ok.returncode == 0 and ok.stdout.strip() == f"{package}: ok"

    def flip(name, data):
        return (name, data[:100] + bytes([data[100] ^ 1]) + data[101:]) if name.startswith("models/") else (name, data)

    flipped = graphflow("package", "--check", str(rewrite(package, tmp_path / "flipped.gfpkg", flip)))
    assert flipped.returncode == 1 and flipped.stderr.startswith("error: models/") and "sha256" in flipped.stderr

    dropped = rewrite(package, tmp_path / "dropped.gfpkg", lambda n, d: None if n == "requirements.txt" else (n, d))
    assert check_package(dropped, progress=lambda _: None) == ["requirements.txt: listed in the manifest but missing"]

    def extra(name, data):
        return ("app/../../evil.sh" if name == "requirements.txt" else name, data)

    problems = check_package(rewrite(package, tmp_path / "unsafe.gfpkg", extra), progress=lambda _: None)
    assert problems[0].startswith("app/../../evil.sh: unsafe entry")

    (tmp_path / "junk.gfpkg").write_bytes(b"not a tar file at all")
    junk = graphflow("package", "--check", str(tmp_path / "junk.gfpkg"))
    assert junk.returncode == 1 and junk.stderr.startswith("error: ") and "not a graphflow package" in junk.stderr
    assert len(junk.stderr.strip().splitlines()) == 1

    def damaged_manifest(name, data):  # the right format, its file list a number (a TypeError before)
        if name != "manifest.json":
            return name, data
        return name, json.dumps({**json.loads(data), "files": 5}).encode()

    damaged = rewrite(package, tmp_path / "manifest.gfpkg", damaged_manifest)
    result = graphflow("package", "--check", str(damaged))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {damaged}: damaged manifest (manifest.json): files: expected an object "
                                     f"of path -> {{sha256, size}}, got int")


@pytest.mark.timeout(180)
def test_check_resolves_the_wheelhouse_offline_for_the_target_platform_and_python(tmp_path, graphflow_wheel,
                                                                                  model_path, monkeypatch):
    """A jetson-jp6 package whose wheelhouse has aarch64 cp310 wheels for every pin passes; one
    with a cp311 or an x86_64 wheel in their place fails, naming the requirement. (The wheels'
    metadata is real pip metadata; their content is not needed for pip's dry run. The full
    wheelhouse from PyPI is checked by the command in benchmarks/README.md.)"""
    from graphflow.deploy import package as package_module
    from graphflow.deploy.targets import TARGETS

    target = TARGETS["jetson-jp6"]
    aarch64_310 = "cp310-cp310-manylinux_2_17_aarch64.manylinux2014_aarch64"

    def make(tag_of):
        def download(spec_target, requirements, out, progress):
            out.mkdir(parents=True, exist_ok=True)
            for requirement in requirements:
                name, version = requirement.split("==")
                fake_target_wheel(out, name.replace("-", "_"), version, tag_of(name))
            return out
        monkeypatch.setattr(package_module, "download_wheelhouse", download)
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        return build_package(REPO / "apps" / "openpose.app.json", folder, target="jetson-jp6", wheelhouse=True,
                             graphflow_wheel=graphflow_wheel, progress=lambda _: None)

    good = make(lambda name: aarch64_310)
    assert check_package(good, progress=lambda _: None) == []
    assert "cupy-cuda12x==13.6.0" in members(good)["requirements.txt"].decode().split()
    wrong_python = make(lambda name: "cp311-cp311-manylinux_2_17_aarch64" if name == "numpy" else aarch64_310)
    problems = check_package(wrong_python, progress=lambda _: None)
    assert problems and "does not resolve offline for jetson-jp6" in problems[0] and "numpy" in " ".join(problems)
    wrong_platform = make(lambda name: "cp310-cp310-manylinux_2_17_x86_64" if name == "pyzmq" else aarch64_310)
    problems = check_package(wrong_platform, progress=lambda _: None)
    assert problems and "pyzmq" in " ".join(problems)
    # The same good package does not resolve for JetPack 7 (Python 3.12).
    assert check_package(good, "jetson-jp7", progress=lambda _: None)
    assert target.python == "3.10"


PACK_CODE = '''from graphflow import Codelet, Param, Rx, Tx
from graphflow.packs.demo.messages import Number


class {name}(Codelet):
    """Multiplies numbers."""
    number = Rx(Number, "In.")
    result = Tx(Number, "Out.")
    factor = Param(float, {factor}, "Multiplier.")

    def start(self):
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        self.result.publish(Number(message.payload.value * self.factor), acqtime=message.acqtime)
'''


@pytest.mark.timeout(120)
def test_packs_given_by_path_ship_beside_the_app_and_run_from_the_extracted_package(tmp_path, graphflow_wheel):
    """A folder pack and a single-file pack, both outside the app's folder, run from the package."""
    (tmp_path / "packs" / "doubling").mkdir(parents=True)
    (tmp_path / "packs" / "doubling" / "__init__.py").write_text(PACK_CODE.format(name="Doubler", factor=2.0))
    (tmp_path / "tripling.py").write_text(PACK_CODE.format(name="Tripler", factor=3.0))
    (tmp_path / "src").mkdir()
    app = {"name": "packs", "modules": ["demo", "../packs/doubling", "../tripling.py"],
           "graph": {"nodes": [
               {"name": "count", "components": [{"name": "counter", "type": "demo.Counter"}]},
               {"name": "double", "components": [{"name": "d", "type": "doubling.Doubler"}]},
               {"name": "triple", "components": [{"name": "t", "type": "tripling.Tripler"}]},
               {"name": "sink", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
               "edges": [{"source": "count/counter/number", "target": "double/d/number"},
                         {"source": "double/d/result", "target": "triple/t/number"},
                         {"source": "triple/t/result", "target": "sink/writer/number"}]},
           "config": {"count": {"counter": {"count": 4, "tick_period": "1ms"}},
                      "sink": {"writer": {"path": "numbers.jsonl"}}}}
    (tmp_path / "src" / "packs.app.json").write_text(json.dumps(app))
    package = build_package(tmp_path / "src" / "packs.app.json", tmp_path / "out", target="linux-x86_64",
                            graphflow_wheel=graphflow_wheel, progress=lambda _: None)
    files = members(package)
    assert {"app/doubling/__init__.py", "app/tripling.py"} <= set(files)
    assert json.loads(files["app/packs.app.json"])["modules"] == ["demo", "./doubling", "./tripling.py"]
    unpacked = tmp_path / "unpacked"
    with tarfile.open(package) as tar:  # the safe "data" filter where this Python has it (3.12 warns without)
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(unpacked / "app" / "packs.app.json"),
                             "--no-viewer", "--quiet"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    values = [json.loads(line)["value"] for line in (tmp_path / "numbers.jsonl").read_text().splitlines()]
    assert values == [0.0, 6.0, 12.0, 18.0]


@pytest.mark.timeout(60)
def test_a_model_file_name_a_device_cannot_hold_safely_is_refused(tmp_path, graphflow_wheel, model_path):
    (tmp_path / "my model;x.onnx").symlink_to(MODEL)
    app = json.loads((REPO / "apps" / "openpose.app.json").read_text())
    app["config"]["inference"]["tensor_rt_inference"]["model_file_path"] = str(tmp_path / "my model;x.onnx")
    (tmp_path / "app.json").write_text(json.dumps(app))
    (tmp_path / "openpose_decoder.subgraph.json").write_text((REPO / "apps" / "openpose_decoder.subgraph.json").read_text())
    result = graphflow("package", str(tmp_path / "app.json"), "-o", str(tmp_path / "out"),
                       "--graphflow-wheel", str(graphflow_wheel))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: inference/tensor_rt_inference/model_file_path: model file name "
                                    "'my model;x.onnx' is not allowed")


def test_requirements_come_from_the_wheel_for_the_target_extras(tmp_path):
    from graphflow.deploy.targets import TARGETS, wheel_requirements

    wheel = tmp_path / "graphflow-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("graphflow-0.1.0.dist-info/METADATA", "\n".join([
            "Metadata-Version: 2.1", "Name: graphflow", "Version: 0.1.0",
            "Requires-Dist: numpy>=1.24", "Requires-Dist: mcap>=1.2",
            'Requires-Dist: onnxruntime>=1.16; extra == "cpu"',
            'Requires-Dist: cupy-cuda12x>=13; extra == "jetson-jp6"',
            'Requires-Dist: numba>=0.59; extra == "jit"',
            'Requires-Dist: tomli>=2; python_version < "3.11" and extra == "dev"',
            'Requires-Dist: exceptiongroup; python_version < "3.11"', ""]))
    jp6 = TARGETS["jetson-jp6"]
    declared = wheel_requirements(wheel, set(jp6.extras))
    assert declared == ["numpy>=1.24", "mcap>=1.2", "onnxruntime>=1.16", "cupy-cuda12x>=13", "numba>=0.59",
                        'exceptiongroup; python_version < "3.11"']
    assert jp6.requirements(declared) == ["numpy==1.26.4", "mcap==1.2.2", "onnxruntime==1.20.1", "cupy-cuda12x==13.6.0",
                                          "numba==0.60.0", 'exceptiongroup; python_version < "3.11"']
    assert "numba>=0.59" not in wheel_requirements(wheel, {"cpu"})
    assert wheel_requirements(wheel, {"dev"})[-2] == 'tomli>=2; python_version < "3.11"'


@pytest.mark.timeout(60)
@pytest.mark.parametrize("installed, says", [
    ({"setuptools": "65.5.0", "wheel": None}, "needs setuptools>=77 and wheel: pip install"),  # a 3.10 venv
    ({"setuptools": None, "wheel": None}, "needs setuptools>=77 and wheel: pip install"),      # a 3.12 venv
    ({"setuptools": "76.1.0", "wheel": "0.45.1"}, "needs setuptools>=77: pip install"),      # no SPDX license string
    ({"setuptools": "77.0.0", "wheel": None}, "needs wheel: pip install"),
])
def test_building_the_wheel_without_its_build_tools_says_what_to_install(tmp_path, monkeypatch, installed, says):
    """A fresh venv's pip comes without them: one clear error before pip's own, not pip's last line."""
    import importlib.metadata as metadata
    from graphflow.deploy.package import DeployError
    real = metadata.version

    def version(name):
        if name in installed:
            if installed[name] is None:
                raise metadata.PackageNotFoundError(name)
            return installed[name]
        return real(name)
    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(DeployError, match=says):
        build_graphflow_wheel(tmp_path)
    assert not list(tmp_path.glob("*.whl"))


@pytest.mark.timeout(120)
def test_bad_outputs_wheels_and_extras_are_refused_in_one_line_and_leave_nothing(tmp_path, graphflow_wheel):
    """Each is the user's to fix: one line naming the option and the file, exit 1, no traceback,
    and no package or .partial left behind (before: tracebacks, and a full-size .partial)."""
    demo = str(REPO / "apps" / "demo.app.json")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "demo-0.0.0.gfpkg").mkdir()  # the package's own name, as a folder
    (tmp_path / "graphflow-9-py3-none-any.whl").write_text("not a zip")
    other = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n")
    impostor = tmp_path / "graphflow-1.0-py3-none-any.whl"
    impostor.write_bytes(other.read_bytes())
    wheel = str(graphflow_wheel)
    for args, says in (
            (["-o", str(tmp_path / "afile")], f"error: -o {tmp_path / 'afile'}: not a folder"),
            (["-o", str(tmp_path / "afile" / "sub")], f"error: -o {tmp_path / 'afile' / 'sub'}: cannot make the folder: "),
            (["-o", str(tmp_path / "taken")], f"error: {tmp_path / 'taken' / 'demo-0.0.0.gfpkg'} is a folder"),
            (["-o", str(tmp_path / "out"), "--graphflow-wheel", str(tmp_path / "none.whl")],
             f"error: --graphflow-wheel {tmp_path / 'none.whl'}: no such file"),
            (["-o", str(tmp_path / "out"), "--graphflow-wheel", str(tmp_path / "graphflow-9-py3-none-any.whl")],
             f"error: --graphflow-wheel {tmp_path / 'graphflow-9-py3-none-any.whl'}: not a readable wheel"),
            (["-o", str(tmp_path / "out"), "--graphflow-wheel", str(other)],
             f"error: --graphflow-wheel {other}: not a graphflow wheel"),
            (["-o", str(tmp_path / "out"), "--graphflow-wheel", str(impostor)],
             f"error: --graphflow-wheel {impostor}: not a graphflow wheel (its metadata names no graphflow)"),
            (["-o", str(tmp_path / "out"), "--extra", "jti"], "error: graphflow has no extra 'jti' (it has: ")):
        if "--graphflow-wheel" not in args:
            args = [*args, "--graphflow-wheel", wheel]
        result = graphflow("package", demo, *args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith(says), (args, result.stderr)
    assert [p for p in tmp_path.rglob("*") if p.suffix in (".partial", ".tmp")] == []
    assert [p for p in tmp_path.rglob("*.gfpkg") if p.is_file()] == []
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert result.stderr.strip().endswith(f"(it has: {', '.join(sorted(extras))})")


@pytest.mark.timeout(120)
def test_a_write_that_fails_midway_leaves_no_partial_package(tmp_path, graphflow_wheel):
    """A real write failure (the file size limit, as a full disk would: the OS refuses the write):
    one line naming the package, exit 1, and no .partial that a later deploy could pick up."""
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))  # 2 MB; the model alone is 8

    env = dict(os.environ, PYTHONPATH=str(REPO), GRAPHFLOW_MODEL_PATH=str(MODELS))
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "package", str(REPO / "apps" / "openpose.app.json"),
                             "-o", str(tmp_path / "out"), "--graphflow-wheel", str(graphflow_wheel)],
                            capture_output=True, text=True, timeout=120, env=env, cwd=REPO, preexec_fn=small_files)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: cannot write {tmp_path / 'out' / 'openpose-0.0.0.gfpkg'}: File too large"
    assert list((tmp_path / "out").iterdir()) == []


def test_the_build_tools_check_asks_for_what_pyproject_requires():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    from graphflow.deploy.package import SETUPTOOLS_MINIMUM

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = f"setuptools>={SETUPTOOLS_MINIMUM}"
    assert wanted in project["build-system"]["requires"] and wanted in project["project"]["optional-dependencies"]["dev"]


@pytest.mark.timeout(120)
def test_the_wheel_declares_its_license_as_an_spdx_expression(graphflow_wheel):
    with zipfile.ZipFile(graphflow_wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines() and any(
        n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())


@pytest.mark.parametrize("path, warned", [("../shared/data/images", True), ("camera:0", False),
                                          ("/data/images", False)])
def test_packaging_warns_of_an_input_path_relative_to_where_the_app_runs(tmp_path, graphflow_wheel, model_path,
                                                                         capsys, path, warned):
    """The app file's own input ('../shared/data/images') means nothing on the device: a newcomer's
    first deploy said ok, then the app failed there."""
    overlay = tmp_path / "input.json"
    overlay.write_text(json.dumps({"feeder": {"image_loader": {"path": path}}}))
    build_package(REPO / "apps" / "openpose.app.json", tmp_path / "out", target="linux-x86_64",
                  graphflow_wheel=graphflow_wheel, overlays=[overlay], progress=lambda _: None)
    said = capsys.readouterr().err
    assert ("warning: the app reads its input from '../shared/data/images' (feeder/image_loader/path), a path "
            "relative to where it runs" in said) == warned, said
