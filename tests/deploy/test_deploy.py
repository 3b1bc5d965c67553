"""Deploy through a real sshd (tests/deploy/conftest.py) into temporary folders on this machine.

The "device" venv reuses this machine's numpy/onnxruntime/opencv (--reuse-system-packages: a venv
with --system-site-packages, and the graphflow wheel installed with --no-deps), so no internet is
needed; everything else — ssh, rsync, the agent, the release layout, the app run — is real."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphflow.deploy import DeployError
from graphflow.deploy.transport import Transport, parse_destination
from tests.conftest import DATA, MODELS, REPO, missing

BUS = DATA / "images" / "bus.jpg"


def graphflow(*args: str, timeout: float = 240, env_extra: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), GRAPHFLOW_MODEL_PATH=str(MODELS), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=kwargs.pop("cwd", REPO), **kwargs)


def deploy(device, package: Path, to: str, *extra: str) -> subprocess.CompletedProcess:
    return graphflow("deploy", str(package), f"--to={to}", "--ssh-config", str(device.config),
                     "--python", device.python, "--reuse-system-packages", *extra)


def remote(device, verb: str, to: str, *extra: str) -> subprocess.CompletedProcess:
    return graphflow("remote", verb, "--ssh-config", str(device.config), "--python", device.python, *extra, "--", to)


@given(st.one_of(st.text(max_size=40), st.text(alphabet="ab1-._/:@~;$()` '\"+\n*&|<>", max_size=30)))
@settings(max_examples=300, deadline=None)
def test_any_destination_is_refused_or_travels_as_plain_names(text):
    """Whatever the text, parse_destination refuses it with a one-line DeployError, or every part
    is a plain name that no shell would read as anything else."""
    try:
        destination = parse_destination(text)
    except DeployError as exc:
        assert "\n" not in str(exc)
        return
    for part in (destination.host, destination.user or "x", destination.dir):
        assert not part.startswith("-") and shlex.quote(part) == part
    assert ".." not in destination.dir.split("/")
    transport = Transport(destination)
    command = transport.remote_command(["true", destination.dir])
    assert command[-3:-1] == ["--", destination.login] and shlex.split(command[-1]) == ["true", destination.dir]


def current(root: Path) -> str | None:
    link = root / "current"
    return os.readlink(link).split("/")[-1] if link.is_symlink() else None


def keypoints(path: Path) -> np.ndarray:
    results = json.loads(path.read_text())
    return np.array(sorted((r["keypoints"] for r in results), key=lambda k: k[:6]), dtype=np.float64)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_foreground_run_on_the_device_matches_a_local_run(device, openpose_packages, tmp_path):
    root = tmp_path / "device"
    result = deploy(device, openpose_packages["1.0.0"], f"device:{root}", "--foreground", "--app-args",
                    f"--input {BUS} --output {tmp_path / 'remote_out'} --no-viewer --quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "device:" in result.stdout and "ok, current = 1.0.0-" in result.stdout
    release = root / "releases" / current(root)
    # On the device, the venv runs the shipped wheel (not the editable install its system site has).
    transport = Transport(parse_destination(f"device:{root}"), device.config)
    where = transport.run([str(release / "venv" / "bin" / "python"), "-c", "import graphflow; print(graphflow.__file__)"])
    assert where.stdout.startswith(str(release / "venv")), where
    assert (release / "models" / "openpose_mobilenet_thin.onnx").is_file()
    local = graphflow("run", "apps/openpose.app.json", "--input", str(BUS), "--output", str(tmp_path / "local_out"),
                      "--no-viewer", "--quiet", env_extra={"GRAPHFLOW_JIT": "0"})  # as the test device runs it
    assert local.returncode == 0, local.stderr[-2000:]
    remote_points, local_points = keypoints(tmp_path / "remote_out" / "predictions.json"), \
        keypoints(tmp_path / "local_out" / "predictions.json")
    assert remote_points.shape == local_points.shape and len(remote_points) >= 3  # bus.jpg: 4 people, 3+ found
    np.testing.assert_allclose(remote_points, local_points, atol=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_redeploy_uploads_only_changed_files_then_rollback_and_prune(device, openpose_packages, tmp_path):
    to = f"device:{tmp_path / 'device'}"
    root = tmp_path / "device"
    first = deploy(device, openpose_packages["1.0.0"], to, "--app-args", "--input 'camera:0' --quiet")
    assert first.returncode == 0, first.stderr[-2000:]
    v1 = current(root)
    assert v1.startswith("1.0.0-") and "uploaded 5 of 5 files" in first.stdout

    again = deploy(device, openpose_packages["1.0.0"], to)  # idempotent: nothing uploaded, same release
    assert again.returncode == 0 and "uploaded 0 of 5 files" in again.stdout and current(root) == v1
    assert "already installed" in again.stderr

    second = deploy(device, openpose_packages["1.1.0"], to)
    assert second.returncode == 0, second.stderr[-2000:]
    v2 = current(root)
    assert v2.startswith("1.1.0-") and v2 != v1
    assert "uploaded 1 of 5 files" in second.stdout  # only the changed app file; model and wheel are shared
    assert f"reusing the venv of release {v1}" in second.stderr  # same requirements: cloned, not rebuilt
    transport = Transport(parse_destination(to), device.config)

    def venv_works(release: str) -> bool:
        python = root / "releases" / release / "venv" / "bin" / "python"
        where = transport.run([str(python), "-c", "import graphflow.packs.openpose as p; print(p.__file__)"])
        return where.returncode == 0 and where.stdout.startswith(str(root / "releases" / release / "venv"))

    assert venv_works(v2) and venv_works(v1)

    def scripts_run_in_their_own_venv(release: str) -> bool:
        """bin/graphflow and activate name this release's venv (they named the .partial folder it
        was built in, and a clone's those of the release it was cloned from)."""
        venv = root / "releases" / release / "venv"
        ran = transport.run([str(venv / "bin" / "graphflow"), "--help"])
        texts = [(venv / "bin" / name).read_text() for name in ("graphflow", "activate")]
        others = [str(root / "releases" / other) for other in (v1, v2) if other != release]
        return ran.returncode == 0 and all(str(venv) in text and ".partial" not in text
                                           and not any(other in text for other in others) for text in texts)

    assert scripts_run_in_their_own_venv(v1) and scripts_run_in_their_own_venv(v2)
    # Deployed without --app-args, the new release runs with the arguments the previous one ran with.
    assert json.loads((root / "current" / "release.json").read_text())["run_args"] == ["--input", "camera:0", "--quiet"]
    packaged = json.loads((root / "current" / "app" / "openpose.app.json").read_text())
    assert packaged["config"]["viz"]["visualizer"]["min_confidence"] == 0.2  # the overlay is in the package

    listed = remote(device, "list", to)
    assert listed.returncode == 0 and f"* {v2}" in listed.stdout and f"  {v1}" in listed.stdout

    back = remote(device, "rollback", to)
    assert back.returncode == 0, back.stderr
    assert current(root) == v1 and f"current = {v1} (was {v2})" in back.stdout
    nothing_left = remote(device, "rollback", to)
    assert nothing_left.returncode == 1 and "no earlier release" in nothing_left.stderr and current(root) == v1

    pruned = remote(device, "prune", to, "--keep", "1")
    assert pruned.returncode == 0 and sorted(p.name for p in (root / "releases").iterdir()) == [v1]
    assert venv_works(v1) and scripts_run_in_their_own_venv(v1)  # removing the clone left the donor venv whole
    # The store keeps only what the kept release uses.
    manifest = json.loads((root / "current" / "manifest.json").read_text())
    assert {p.name for p in (root / "store").iterdir()} == {e["sha256"] for e in manifest["files"].values()}

    # An engine built on the device lands in the cache every release shares (XDG_CACHE_HOME=DIR/cache).
    engines = root / "cache" / "graphflow" / "engines"
    engines.mkdir(parents=True)
    (engines / "openpose_mobilenet_thin-fp16-0123456789abcdef.engine").write_bytes(b"engine")
    (engines / "openpose_mobilenet_thin-fp16-0123456789abcdef.engine.key.json").write_text(json.dumps(
        {"tensorrt": "10.3.0", "gpu": "Orin (nvgpu)", "l4t": "R36.4.0", "precision": "fp16"}))
    status = remote(device, "status", to)
    assert status.returncode == 0 and f"current {v1}" in status.stdout
    assert "1 cached TensorRT engine(s)" in status.stdout
    assert "openpose_mobilenet_thin-fp16-0123456789abcdef.engine: TensorRT 10.3.0, Orin (nvgpu), L4T R36.4.0, fp16" \
        in status.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_cut_connection_mid_upload_leaves_current_alone_and_the_next_deploy_resumes(device, openpose_packages,
                                                                                     tmp_path):
    root = tmp_path / "device"
    to = f"device:{root}"
    first = deploy(device, openpose_packages["1.0.0"], to)
    assert first.returncode == 0
    v1 = current(root)
    # Upload the 1.1.0 package to a fresh store at 500 KB/s (the 7.8 MB model takes ~15 s) and cut
    # the connection from the server's side while the model is on its way.
    fresh = tmp_path / "fresh"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    upload = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "deploy", str(openpose_packages["1.1.0"]),
                               "--to", f"device:{fresh}", "--ssh-config", str(device.config), "--python",
                               device.python, "--reuse-system-packages", "--bwlimit", "500"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and not partial:
        partial = [p for p in (fresh / "store").glob(".*") if p.is_file() and p.stat().st_size > 500_000]
        time.sleep(0.1)
    assert partial, "the upload never got under way"
    for pid in device.connections():
        os.kill(pid, signal.SIGKILL)
    out, err = upload.communicate(timeout=60)
    assert upload.returncode == 1 and "FAILED at upload" in out, (out, err)
    assert not (fresh / "current").exists()
    assert not (fresh / "releases").exists() or not any((fresh / "releases").iterdir())
    kept = sum(p.stat().st_size for p in (fresh / "store" / ".rsync-partial").glob("*"))
    assert kept > 500_000  # rsync kept what arrived

    resumed = deploy(device, openpose_packages["1.1.0"], f"device:{fresh}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert current(fresh).startswith("1.1.0-")
    assert current(root) == v1  # the other install is untouched


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failed_install_leaves_current_untouched_and_a_rerun_completes(device, openpose_packages, tmp_path):
    root = tmp_path / "device"
    to = f"device:{root}"
    assert deploy(device, openpose_packages["1.0.0"], to).returncode == 0
    v1 = current(root)
    # A device whose python cannot make a venv fails the install of 1.1.0 half-way.
    broken = tmp_path / "python-without-venv"
    broken.write_text(f"#!/bin/sh\nif [ \"$2\" = venv ]; then echo 'No module named venv' >&2; exit 1; fi\n"
                      f"exec {device.python} \"$@\"\n")
    broken.chmod(0o755)
    failed = graphflow("deploy", str(openpose_packages["1.1.0"]), "--to", to, "--ssh-config", str(device.config),
                       "--python", str(broken), "--reuse-system-packages")
    assert failed.returncode == 1 and "FAILED at install" in failed.stdout and "No module named venv" in failed.stdout
    assert "No module named venv" not in failed.stderr  # said once (the device's error line was printed too)
    assert current(root) == v1
    assert [p.name for p in (root / "releases").iterdir() if p.name.endswith(".partial")]
    rerun = deploy(device, openpose_packages["1.1.0"], to)
    assert rerun.returncode == 0 and "uploaded 0 of 5 files" in rerun.stdout
    assert current(root).startswith("1.1.0-")
    assert not [p.name for p in (root / "releases").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fleet_deploys_in_parallel_and_one_failure_leaves_the_others(device, openpose_packages, tmp_path):
    inventory = tmp_path / "devices.txt"
    inventory.write_text(f"# the fleet\ndevice:{tmp_path / 'a'}\nunreachable:{tmp_path / 'c'}\n")
    result = graphflow("deploy", str(openpose_packages["1.0.0"]), "--to", str(inventory),
                       "--to", f"device:{tmp_path / 'b'}", "--ssh-config", str(device.config),
                       "--python", device.python, "--reuse-system-packages")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, lines  # one line per device, then the count
    assert lines[0].startswith(f"device:{tmp_path / 'a'}: ok") and lines[2].startswith(f"device:{tmp_path / 'b'}: ok")
    assert lines[1].startswith(f"unreachable:{tmp_path / 'c'}: FAILED at connect")
    assert lines[3] == "2 of 3 devices deployed, 1 failed"
    assert current(tmp_path / "a").startswith("1.0.0-") and current(tmp_path / "b").startswith("1.0.0-")


@pytest.mark.timeout(120)
def test_doctor_reports_each_missing_thing_with_its_fix(device, tmp_path):
    result = remote(device, "doctor", f"device:{tmp_path / 'device'}")
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok   python") for line in lines), lines
    if not Path("/etc/nv_tegra_release").exists():
        assert result.returncode == 1
        index = next(i for i, line in enumerate(lines) if "jetpack" in line)
        assert lines[index].startswith("MISSING") and "fix:" in lines[index + 1]
    assert any("disk" in line and "GB free" in line for line in lines)
    # about the folder given, where it will be made (a newcomer's doctor looked at ~ and said nothing of it)
    assert f"ok   disk      " in result.stdout and f"GB free at {tmp_path}\n" in result.stdout
    assert f"ok   folder    {tmp_path / 'device'} can be written by " in result.stdout
    assert any(line.startswith(("ok   packages  ", "MISSING packages  ")) for line in lines), lines


@pytest.mark.parametrize("target", [
    "host name", "host;rm -rf ~", "$(reboot)", "-oProxyCommand=touch{x}", "dev'ice", 'dev"ice', "device:dir with space",
    "device:-rf", "device:a;b", "device:$(touch{x})", "device:../../etc", "`touch{x}`@device", "device:a'b",
    "us er@device", "-l@device", "device\n", "device:dir\n", "device:dir\ntouch{x}",
])
@pytest.mark.timeout(60)
def test_hostile_destinations_are_refused_before_anything_runs(device, openpose_packages, tmp_path, target):
    marker = tmp_path / "pwned"
    target = target.replace("{x}", f" {marker}")
    for result in (deploy(device, openpose_packages["1.0.0"], target), remote(device, "status", target)):
        assert result.returncode == 1
        errors = result.stderr.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("error: destination "), result.stderr
    assert not marker.exists()


@pytest.mark.timeout(120)
def test_hostile_app_names_are_refused_when_packaging(tmp_path, graphflow_wheel):
    app = json.loads((REPO / "apps" / "demo.app.json").read_text())
    (tmp_path / "scale_add.subgraph.json").write_text((REPO / "apps" / "scale_add.subgraph.json").read_text())
    for name in ("a b", "x;reboot", "$(id)", "-rf", "../up", "it's", "app\n"):
        app["name"] = name
        (tmp_path / "app.json").write_text(json.dumps(app))
        result = graphflow("package", str(tmp_path / "app.json"), "-o", str(tmp_path / "out"),
                           "--graphflow-wheel", str(graphflow_wheel))
        # (by the app schema, which the packager checks first: the name names files; or by the packager)
        said = result.stderr
        assert result.returncode == 1 and len(said.strip().splitlines()) == 1, (name, said)
        assert f"$.name: {name!r} does not have the form" in said or said.startswith("error: app name "), (name, said)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.timeout(60)
def test_remote_names_travel_quoted(device, tmp_path):
    """Names the validation allows still reach the device as single arguments."""
    folder = tmp_path / "a+b.c_d-e"
    transport = Transport(parse_destination(f"device:{folder}"), device.config, python=device.python)
    made = transport.run(["mkdir", "-p", "--", str(folder / "x y")])
    assert made.returncode == 0 and (folder / "x y").is_dir()
    echoed = transport.run(["printf", "%s\\n", "a b", "$(id)", "'q'", ";"])
    assert echoed.stdout.splitlines() == ["a b", "$(id)", "'q'", ";"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_service_writes_a_unit_that_verifies_and_says_why_it_did_not_start(device, openpose_packages, tmp_path):
    root = tmp_path / "device"
    result = deploy(device, openpose_packages["1.0.0"], f"device:{root}", "--service")
    # a folder other than ~/graphflow: its unit's name has a digest of the folder, so that two
    # folders with the same app on one device do not share (and overwrite) one unit
    name = f"graphflow-openpose-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]}.service"
    unit = device.config_home / "systemd" / "user" / name
    assert unit.is_file()
    text = unit.read_text()
    assert f"ExecStart={device.python} {root}/.graphflow/agent.py run {root}\n" in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    other = tmp_path / "other"
    deploy(device, openpose_packages["1.0.0"], f"device:{other}", "--service")
    other_name = f"graphflow-openpose-{hashlib.sha256(str(other.resolve()).encode()).hexdigest()[:8]}.service"
    other_unit = device.config_home / "systemd" / "user" / other_name
    assert other_name != name and f"agent.py run {other}\n" in other_unit.read_text()
    assert unit.read_text() == text  # the first folder's unit is still its own
    if Path("/run/systemd/system").is_dir() and os.environ.get("XDG_RUNTIME_DIR"):
        assert result.returncode == 0 and f"service {name} started" in result.stdout
    else:  # no systemd user session here (a container): installed and switched, and it says so
        assert result.returncode == 1, result.stdout
        assert "the release is current and its unit is written to" in result.stdout
        assert "did not start" in result.stdout and "loginctl enable-linger" in result.stdout
        assert "deploy with --foreground" in result.stdout
        assert current(root).startswith("1.0.0-")
        # doctor says so before a deploy does (a newcomer's --service failed only at the start)
        doctor = remote(device, "doctor", f"device:{root}").stdout
        assert "MISSING systemd   no systemd user manager" in doctor and "or deploy with --foreground" in doctor, doctor
        # a rollback that cannot restart the service still says that it rolled back
        deploy(device, openpose_packages["1.1.0"], f"device:{root}")
        assert current(root).startswith("1.1.0-")
        back = remote(device, "rollback", f"device:{root}")
        assert back.returncode == 1 and current(root).startswith("1.0.0-")
        assert "rolled back: current -> releases/1.0.0-" in back.stderr and "did not restart" in back.stderr, back.stderr
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        broken = tmp_path / "graphflow-broken.service"
        broken.write_text(text.replace("ExecStart=", "ExecStrat="))  # the check must catch a bad unit
        assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True).returncode != 0


def viewer_page(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.read().decode(errors="replace")
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_foreground_viewer_through_the_tunnel_and_ctrl_c_stops_the_app_on_the_device(device, openpose_packages,
                                                                                   tmp_path):
    root = tmp_path / "device"
    device_port, local_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # The app serves its viewer on the device's loopback after the image (until Ctrl-C or --duration).
    app = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "deploy", str(openpose_packages["1.0.0"]),
                            f"--to=device:{root}", "--ssh-config", str(device.config), "--python", device.python,
                            "--reuse-system-packages", "--foreground", "--app-args",
                            f"--input {BUS} --output {tmp_path / 'out'} --quiet --viewer-port {device_port} --duration 200"],
                           env=env, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    tunnel = None
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out" / "predictions.json").exists() or not listening(device_port):
            assert time.monotonic() < deadline and app.poll() is None, "the app did not come up"
            time.sleep(0.2)
        tunnel = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "remote", "view", "--ssh-config",
                                   str(device.config), "--port", str(local_port), "--remote-port", str(device_port),
                                   "device"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True)
        page = None
        while page is None and time.monotonic() < deadline:
            page = viewer_page(local_port)
            time.sleep(0.2)
        assert page is not None and "<html" in page.lower()
        os.killpg(tunnel.pid, signal.SIGINT)  # Ctrl-C ends the tunnel
        assert tunnel.wait(timeout=30) == 0 and not listening(local_port)
        os.killpg(app.pid, signal.SIGINT)  # Ctrl-C in the terminal: the app on the device stops
        said, _ = app.communicate(timeout=60)
        # it says so, with a shell's status for Ctrl-C (before: nothing, and ssh's 255)
        assert app.returncode == 130 and f"stopped the app on device:{root}" in said, said[-2000:]
        deadline = time.monotonic() + 30
        while listening(device_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not listening(device_port), "the app still runs on the device"
    finally:
        for process in (tunnel, app):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.timeout(180)
def test_a_package_for_another_platform_is_refused_before_anything_is_installed(device, graphflow_wheel, tmp_path,
                                                                                monkeypatch, model_path):
    """A jetson-jp6 package (aarch64, Python 3.10 wheelhouse) sent to this x86_64 "device"."""
    from graphflow.deploy import package as package_module
    from graphflow.deploy.package import build_package
    from tests.deploy.wheels import fake_target_wheel

    def download(spec_target, requirements, out, progress):
        out.mkdir(parents=True, exist_ok=True)
        for requirement in requirements:
            name, version = requirement.split("==")
            fake_target_wheel(out, name.replace("-", "_"), version, "cp310-cp310-manylinux_2_17_aarch64")
        return out

    monkeypatch.setattr(package_module, "download_wheelhouse", download)
    package = build_package(REPO / "apps" / "openpose.app.json", tmp_path / "pkg", target="jetson-jp6",
                            wheelhouse=True, graphflow_wheel=graphflow_wheel, progress=lambda _: None)
    root = tmp_path / "device"
    result = graphflow("deploy", str(package), f"--to=device:{root}", "--ssh-config", str(device.config),
                       "--python", device.python)
    assert result.returncode == 1
    assert (f"FAILED at install: the package is for jetson-jp6 (Python 3.10, aarch64); this device runs Python "
            f"{sys.version_info[0]}.{sys.version_info[1]} on {platform.machine()}") in result.stdout, result.stdout
    assert not (root / "current").exists() and not list((root / "releases").iterdir())


@pytest.mark.timeout(300)
def test_a_package_for_another_target_without_a_wheelhouse_installs_with_a_warning(device, tmp_path, graphflow_wheel,
                                                                                 model_path):
    """Its own files run anywhere, but its requirements were pinned for a Jetson: it installed
    and said ok, not a word of the target."""
    from graphflow.deploy.package import build_package

    package = build_package(REPO / "apps" / "demo.app.json", tmp_path / "pkg", target="jetson-jp6",
                            graphflow_wheel=graphflow_wheel, progress=lambda _: None)
    result = deploy(device, package, f"device:{tmp_path / 'device'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"warning: the package is for jetson-jp6 (Python 3.10, aarch64); this device runs Python "
            f"{sys.version_info[0]}.{sys.version_info[1]} on {platform.machine()}; it installs, but its requirements "
            f"were pinned for jetson-jp6") in result.stdout + result.stderr
    assert (tmp_path / "device" / "current").exists()


@pytest.mark.timeout(300)
def test_app_args_graphflow_run_refuses_are_refused_before_the_switch(device, tmp_path, graphflow_wheel):
    """A misspelt option was kept and switched to: the service failed at each start, and every
    later deploy without --app-args kept it."""
    from graphflow.deploy.package import build_package
    from graphflow.deploy.targets import default_target

    package = build_package(REPO / "apps" / "demo.app.json", tmp_path / "pkg", target=default_target(),
                            graphflow_wheel=graphflow_wheel, progress=lambda _: None)
    root = tmp_path / "device"
    refused = deploy(device, package, f"device:{root}", "--app-args=--no-viewr --max-ticks 3")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert ("--app-args --no-viewr --max-ticks 3: graphflow: error: unrecognized arguments: --no-viewr "
            "(nothing switched)") in refused.stdout + refused.stderr
    assert not (root / "current").exists()
    accepted = deploy(device, package, f"device:{root}", "--app-args=--no-viewer --max-ticks 3")
    assert accepted.returncode == 0 and (root / "current").exists(), accepted.stdout + accepted.stderr


def test_the_app_runs_with_the_release_models_and_the_shared_engine_cache(tmp_path):
    """What the agent runs for `current`: the release's venv and app, its models folder as the model
    path, and one engine cache for every release (so a redeploy of the same model builds nothing)."""
    from graphflow.deploy import agent

    release = tmp_path / "releases" / "1.0.0-abcdef12"
    release.mkdir(parents=True)
    (release / "release.json").write_text(json.dumps({"app": {"file": "app/x.app.json"}, "run_args": ["--input", "a b"]}))
    (tmp_path / "current").symlink_to("releases/1.0.0-abcdef12")
    command, env, cwd = agent.app_command(str(tmp_path))
    assert command == [str(release / "venv" / "bin" / "python"), "-m", "graphflow.cli", "run",
                       str(release / "app" / "x.app.json"), "--input", "a b"]
    assert env["GRAPHFLOW_MODEL_PATH"] == str(release / "models")
    assert env["XDG_CACHE_HOME"] == str(tmp_path / "cache") and cwd == str(tmp_path / "data")


@pytest.mark.timeout(120)
def test_a_release_venv_made_from_a_venv_sees_that_venvs_packages(tmp_path):
    """A device whose python3 is itself a venv (on a Jetson, one made to reach TensorRT, with numpy
    and CuPy installed into it): the release's venv must see that venv's packages, which
    `python -m venv --system-site-packages` alone does not give (only the base interpreter's)."""
    from graphflow.deploy import agent

    def python_of(venv: Path) -> str:
        return str(venv / "bin" / "python")

    def site_packages(python: str) -> Path:
        return Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())

    def can_import(python: str) -> bool:
        return subprocess.run([python, "-c", "import only_in_the_device_venv"], capture_output=True).returncode == 0

    device = tmp_path / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(device)], check=True)
    (site_packages(python_of(device)) / "only_in_the_device_venv.py").write_text("")
    if sys.prefix == sys.base_prefix:  # this python is no venv: nothing to add
        assert agent.venv_site_packages(sys.executable) == []
    folders = agent.venv_site_packages(python_of(device))
    assert folders == [str(site_packages(python_of(device)))]

    release = tmp_path / "release-venv"
    subprocess.run([python_of(device), "-m", "venv", "--system-site-packages", "--without-pip", str(release)],
                   check=True)
    assert not can_import(python_of(release))  # what venv alone gives
    agent.see_packages_of(python_of(release), folders)
    assert can_import(python_of(release))
    # two device venvs on one interpreter are two environments: no release venv is reused across them
    manifest = {"files": {}}
    assert agent.environment_key(manifest, python_of(device), True, True, folders) != \
        agent.environment_key(manifest, python_of(device), True, True, [])


def fake_install(root: Path, releases: list[str], current_release: str | None = None) -> None:
    """An install as the agent lays it out, without venvs: releases made in the order given
    (install times one second apart), the history of what was current, and current."""
    (root / ".graphflow").mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(releases):
        (root / "releases" / name).mkdir(parents=True)
        installed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + number))
        (root / "releases" / name / "release.json").write_text(json.dumps(
            {"release": name, "app": {"name": "x", "file": "app/x.app.json"}, "installed": installed,
             "installed_ns": (1_700_000_000 + number) * 10**9}))
    current_release = current_release or releases[-1]
    (root / "history").write_text("\n".join(releases[:releases.index(current_release) + 1]) + "\n")
    (root / "current").symlink_to(f"releases/{current_release}")


@pytest.mark.timeout(120)
def test_remote_verbs_on_a_folder_without_an_install_say_so_and_create_nothing(device, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (empty, tmp_path / "absent"):
        for verb in ("status", "list", "logs", "rollback", "prune", "restart"):
            result = remote(device, verb, f"device:{folder}")
            assert result.returncode == 1, (verb, result.stdout, result.stderr)
            assert result.stderr.strip().splitlines() == [f"error: no graphflow install at device:{folder}"], verb
    doctor = remote(device, "doctor", f"device:{empty}")
    assert "disk" in doctor.stdout
    assert list(empty.iterdir()) == [] and not (tmp_path / "absent").exists()


@pytest.mark.timeout(120)
def test_remote_logs_without_a_systemd_journal_says_so_in_one_line(device, tmp_path):
    if any(any(Path(folder).glob("**/*.journal")) for folder in ("/var/log/journal", "/run/log/journal")):
        pytest.skip("this machine keeps a systemd journal")
    root = tmp_path / "device"
    fake_install(root, ["1.0.0-aaaaaaaa"])
    (root / ".graphflow" / "unit").write_text("graphflow-x.service\n")
    result = remote(device, "logs", f"device:{root}")
    assert result.returncode == 1 and "-- No entries --" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and "keeps no systemd journal" in result.stderr, result.stderr


OLD_PYTHONS = [Path("/root/.pyenv/versions/2.7.18/bin/python"), Path("/root/.pyenv/versions/3.9.18/bin/python")]


@pytest.mark.parametrize("old_python", OLD_PYTHONS, ids=lambda p: p.parts[-3])
@pytest.mark.timeout(240)
def test_an_old_device_python_is_refused_before_upload_and_doctor_says_what_to_do(device, openpose_packages, tmp_path,
                                                                                   old_python):
    if not old_python.exists():
        missing(f"{old_python} is not here (pyenv install {old_python.parts[-3]})")
    version = subprocess.run([str(old_python), "-c", "import sys; sys.stdout.write('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True).stdout
    root = tmp_path / "device"
    result = graphflow("deploy", str(openpose_packages["1.0.0"]), f"--to=device:{root}", "--ssh-config",
                       str(device.config), "--python", str(old_python), "--reuse-system-packages")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[0] == (
        f"device:{root}: FAILED at check: device python {old_python} is {version}; graphflow needs >= 3.10 "
        f"(use --python PATH)"), result.stdout
    assert not root.exists()  # nothing uploaded
    doctor = graphflow("remote", "doctor", "--ssh-config", str(device.config), "--python", str(old_python),
                       f"device:{root}")
    assert doctor.returncode == 1 and "SyntaxError" not in doctor.stdout + doctor.stderr
    assert doctor.stdout.splitlines()[0].startswith(f"MISSING python    Python {version} ({old_python})")
    assert "fix: sudo apt install python3 (3.10 or newer) (or --python PATH)" in doctor.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_deploy_or_a_remote_change_while_another_is_in_progress_fails_at_once(device, openpose_packages, tmp_path):
    import fcntl

    root = tmp_path / "device"
    fake_install(root, ["1.0.0-aaaaaaaa", "1.1.0-bbbbbbbb"])
    busy = f"error: another deploy is in progress on {root} (pid 4242); try again when it ends"
    with open(root / ".graphflow" / "lock", "w") as lock:  # what a deploy in progress holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242 deploy\n")
        lock.flush()
        for verb, extra in (("prune", ["--keep", "1"]), ("rollback", []), ("restart", [])):
            result = remote(device, verb, f"device:{root}", *extra)
            assert result.returncode == 1 and result.stderr.strip().splitlines() == [busy], (verb, result.stderr)
        started = time.monotonic()
        result = deploy(device, openpose_packages["1.0.0"], f"device:{root}")
        assert result.returncode == 1 and time.monotonic() - started < 30
        assert result.stdout.strip() == f"device:{root}: FAILED at compare: {busy[len('error: '):]}", result.stdout
    assert not (root / "store").exists() or not list((root / "store").iterdir())  # nothing uploaded
    assert current(root) == "1.1.0-bbbbbbbb" and len(list((root / "releases").iterdir())) == 2
    # once it ends, the same verb goes through
    assert remote(device, "rollback", f"device:{root}").returncode == 0 and current(root) == "1.0.0-aaaaaaaa"


@pytest.mark.timeout(120)
def test_a_private_key_readable_by_others_is_named_with_its_fix(device, tmp_path):
    loose = device.config.parent / "loose_key"
    shutil.copy(device.config.parent / "client_key", loose)
    loose.chmod(0o644)
    config = tmp_path / "ssh_config"
    config.write_text(device.config.read_text().replace("Host device", "Host loosekey", 1)
                      .replace(str(device.config.parent / "client_key"), str(loose)))
    root = tmp_path / "device"
    fake_install(root, ["1.0.0-aaaaaaaa"])
    for verb in ("status", "doctor"):
        result = graphflow("remote", verb, "--ssh-config", str(config), "--python", device.python, f"loosekey:{root}")
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [f"error: ssh key {loose} is readable by others; chmod 600 {loose}"], \
            result.stderr


@pytest.mark.timeout(120)
def test_remote_view_checks_its_ports_and_prints_the_address_once_the_tunnel_works(device, tmp_path):
    import http.server
    import threading

    def view(*args: str, target: str = "device") -> subprocess.CompletedProcess:
        return graphflow("remote", "view", "--ssh-config", str(device.config), "--python", device.python, *args,
                         target, timeout=60)

    for bad in (["--port", "70000"], ["--remote-port", "0"], ["--port", "-1"]):
        result = view(*bad)
        assert result.returncode == 2 and "expected a port number 1-65535" in result.stderr, (bad, result.stderr)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = view("--port", str(port))
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            f"error: local port {port} is not free (Address already in use); pick another with --port N"]
    nothing = free_port()
    result = view("--port", str(free_port()), "--remote-port", str(nothing))
    assert result.returncode == 1 and result.stdout == "" and result.stderr.strip().splitlines() == [
        f"error: no viewer is serving on device port {nothing} (is the app running with its viewer?)"]
    result = view("--port", str(free_port()), target="unreachable")
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "ssh to unreachable failed" in result.stderr

    # a viewer on the device (this machine): the address is printed once the tunnel answers
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local_port = free_port()
    tunnel = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "remote", "view", "--ssh-config",
                               str(device.config), "--python", device.python, "--port", str(local_port),
                               "--remote-port", str(server.server_address[1]), "device"],
                              env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        line = tunnel.stdout.readline()
        assert line.startswith(f"viewer of device: http://127.0.0.1:{local_port}/")
        assert viewer_page(local_port) is not None  # at once: no waiting after the address is printed
        os.killpg(tunnel.pid, signal.SIGINT)
        assert tunnel.wait(timeout=30) == 0
    finally:
        server.shutdown()
        if tunnel.poll() is None:
            os.killpg(tunnel.pid, signal.SIGKILL)


@pytest.mark.timeout(120)
def test_prune_refuses_keep_below_one_and_names_newer_releases_it_removes(device, tmp_path):
    root = tmp_path / "device"
    v1, v2, v3 = "1.0.0-aaaaaaaa", "1.1.0-bbbbbbbb", "1.2.0-cccccccc"
    fake_install(root, [v1, v2, v3], current_release=v2)  # as after a rollback from v3
    for keep in ("0", "-1"):
        refused = remote(device, "prune", f"device:{root}", "--keep", keep)
        assert refused.returncode == 2 and "argument --keep: expected a number of releases, at least 1" in \
            refused.stderr, refused.stderr
    assert sorted(p.name for p in (root / "releases").iterdir()) == [v1, v2, v3]
    # keep 2: the current release and the most recently installed other (v3, newer than current)
    pruned = remote(device, "prune", f"device:{root}", "--keep", "2")
    assert pruned.returncode == 0 and sorted(p.name for p in (root / "releases").iterdir()) == [v2, v3]
    assert f"removed 1 release(s) ({v1})" in pruned.stdout and "note:" not in pruned.stdout
    pruned = remote(device, "prune", f"device:{root}", "--keep", "1")
    assert pruned.returncode == 0 and [p.name for p in (root / "releases").iterdir()] == [v2] and current(root) == v2
    assert f"removed 1 release(s) ({v3})" in pruned.stdout
    assert f"note: {v3} was installed after the current release" in pruned.stdout, pruned.stdout


@pytest.mark.timeout(60)
def test_deploying_a_folder_says_it_is_a_folder(tmp_path):
    (tmp_path / "dist").mkdir()
    result = graphflow("deploy", str(tmp_path / "dist"), "--to", "device", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: package {str(tmp_path / 'dist')!r} is a folder, not a .gfpkg file "
        f"(`graphflow package` writes NAME-VERSION.gfpkg into it)"], result.stderr


@pytest.mark.timeout(120)
def test_a_device_folder_that_cannot_be_written_says_so_and_what_to_do(device, openpose_packages):
    """The device's own words (mkdir's, rsync's) did not say that the folder was the problem."""
    result = deploy(device, openpose_packages["1.0.0"], "device:/sys/graphflow")
    assert result.returncode == 1
    assert ("FAILED at check: mkdir: cannot create directory '/sys/graphflow': Operation not permitted "
            "(/sys/graphflow cannot be written by the ssh user: choose another --to HOST:DIR, or fix its "
            "permissions)") in result.stdout.replace("‘", "'").replace("’", "'"), result.stdout + result.stderr


def test_the_agent_finishes_its_work_when_the_deploying_machine_is_gone(monkeypatch):
    """Ctrl-C on the laptop (or a dropped link) during an install closes the agent's stdout and
    stderr; its next line raised BrokenPipeError right after the switch, so the old releases were
    not pruned and the service was neither installed nor restarted. Now its lines go nowhere and
    it goes on."""
    from graphflow.deploy import agent

    read, write = os.pipe()
    os.close(read)  # the ssh session is gone
    gone = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stderr", gone)
    monkeypatch.setattr(sys, "stdout", gone)
    agent.say("current -> releases/1.1.0-abc")  # raised BrokenPipeError
    agent.say("removed 1.0.0")
    assert agent.result({"release": "1.1.0-abc"}) == 0
    assert sys.stderr is not gone and sys.stdout is not gone  # the rest goes nowhere, exit included
    monkeypatch.undo()
    try:
        gone.close()
    except OSError:
        pass


def test_a_new_apps_service_in_a_folder_retires_the_unit_of_the_app_before(tmp_path, monkeypatch):
    """demo deployed with --service where openpose was: both units ran the folder's current (after a
    rollback the demo's unit ran openpose), and remote verbs saw only the new one."""
    from graphflow.deploy import agent

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = tmp_path / "device"
    (root / ".graphflow").mkdir(parents=True)
    units = tmp_path / "config" / "systemd" / "user"
    units.mkdir(parents=True)
    (units / "graphflow-openpose-406316f8.service").write_text("[Service]\n")
    (root / ".graphflow" / "unit").write_text("graphflow-openpose-406316f8.service")
    agent.retire_other_unit(str(root), "graphflow-openpose-406316f8.service")  # the same app: kept
    assert (units / "graphflow-openpose-406316f8.service").exists()
    agent.retire_other_unit(str(root), "graphflow-demo-406316f8.service")
    assert not (units / "graphflow-openpose-406316f8.service").exists()
    (tmp_path / "config" / "precious").write_text("keep")
    (root / ".graphflow" / "unit").write_text("../../precious")  # a tampered record names no unit
    agent.retire_other_unit(str(root), "graphflow-demo-406316f8.service")
    assert (tmp_path / "config" / "precious").read_text() == "keep"
