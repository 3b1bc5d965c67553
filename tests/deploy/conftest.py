"""A real OpenSSH server for the deploy tests: Debian's sshd, started unprivileged on 127.0.0.1
(a free port) with a temporary host key and authorized key, and an ssh config file the tests
pass with --ssh-config, so ~/.ssh is never read or written. CI installs openssh-server,
openssh-client and rsync (.ci/run)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MODELS

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Device:
    """The "device": this machine reached through the test sshd as Host ``device``; its sessions
    have XDG_CONFIG_HOME under the test's folder (systemd user units land there, not in ~)."""
    config: Path          # ssh config file (--ssh-config)
    port: int
    pid: int              # the listening sshd
    host: str = "device"
    python: str = sys.executable  # the device's python3 (sshd's PATH does not include pyenv)
    config_home: Path | None = None

    def connections(self) -> list[int]:
        """Per-connection sshd processes (children of the listening one)."""
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.pid:
                    children.append(int(entry.name))
        return children


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def device(tmp_path_factory) -> Device:
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("rsync"):
        pytest.fail("the deploy tests need openssh-server, openssh-client and rsync (apt install "
                    "openssh-server openssh-client rsync)")
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    host_public = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"device {host_public[0]} {host_public[1]}\n")
    port = _free_port()
    (folder / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {folder / 'host_key'}
AuthorizedKeysFile {folder / 'authorized_keys'}
PidFile {folder / 'sshd.pid'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
SetEnv XDG_CONFIG_HOME={folder / 'config'}
""")
    for path in folder.iterdir():
        if path.name in ("host_key", "client_key"):
            path.chmod(0o600)
    (folder / "ssh_config").write_text(f"""\
Host device
    HostName 127.0.0.1
    Port {port}
    User {getpass.getuser()}
    IdentityFile {folder / 'client_key'}
    IdentitiesOnly yes
    HostKeyAlias device
    UserKnownHostsFile {folder / 'known_hosts'}
    StrictHostKeyChecking yes
    BatchMode yes
Host unreachable
    HostName 127.0.0.1
    Port {_free_port()}
    User {getpass.getuser()}
    IdentityFile {folder / 'client_key'}
    IdentitiesOnly yes
    UserKnownHostsFile {folder / 'known_hosts'}
    StrictHostKeyChecking yes
    BatchMode yes
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder, when run as root
    log = open(folder / "sshd.log", "w")
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(["ssh", "-F", str(folder / "ssh_config"), "device", "true"], capture_output=True)
        if probe.returncode == 0:
            break
        if server.poll() is not None:
            pytest.fail(f"sshd exited: {(folder / 'sshd.log').read_text()[-500:]}")
        time.sleep(0.2)
    else:
        server.terminate()
        pytest.fail(f"sshd does not answer: {(folder / 'sshd.log').read_text()[-500:]}")
    yield Device(folder / "ssh_config", port, server.pid, config_home=folder / "config")
    server.terminate()
    server.wait(timeout=10)
    log.close()


@pytest.fixture(scope="session")
def graphflow_wheel(tmp_path_factory) -> Path:
    """graphflow built once as a wheel for every package the tests make."""
    from graphflow.deploy.package import build_graphflow_wheel

    return build_graphflow_wheel(tmp_path_factory.mktemp("wheel"), progress=lambda _: None)


@pytest.fixture(scope="session")
def openpose_packages(tmp_path_factory, graphflow_wheel) -> dict[str, Path]:
    """The OpenPose app for linux-x86_64, as 1.0.0 and as 1.1.0 (a config overlay changed)."""
    from graphflow.deploy.package import build_package

    if not (MODELS / "openpose_mobilenet_thin.onnx").exists():
        pytest.fail(f"the OpenPose model is not at {MODELS}")
    os.environ["GRAPHFLOW_MODEL_PATH"] = str(MODELS)
    out = tmp_path_factory.mktemp("packages")
    repo = Path(__file__).resolve().parents[2]
    overlay = out / "overlay.json"
    overlay.write_text('{"viz": {"visualizer": {"min_confidence": 0.2}}}')
    quiet = dict(progress=lambda _: None, graphflow_wheel=graphflow_wheel, target="linux-x86_64")
    return {"1.0.0": build_package(repo / "apps" / "openpose.app.json", out / "v1", version="1.0.0", **quiet),
            "1.1.0": build_package(repo / "apps" / "openpose.app.json", out / "v2", version="1.1.0",
                                   overlays=[overlay], **quiet)}
