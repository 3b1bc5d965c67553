"""A real OpenSSH server for the deploy tests: Debian's sshd, started unprivileged on 127.0.0.1
(a free port) with a temporary host key and authorized key, and an ssh config file the tests
pass with --ssh-config, so ~/.ssh is never read or written. CI installs openssh-server,
openssh-client and rsync (.ci/run)."""
from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Device:
    """The "device": this machine reached through the test sshd as Host ``device``; its sessions
    have XDG_CONFIG_HOME under the test's folder (systemd user units land there, not in ~) and
    GRAPHFLOW_JIT=0 (the decoder's NumPy steps: numba would compile its kernels anew in every
    fresh release venv, most of a minute here, which tests nothing about deploying)."""
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


class SshdError(RuntimeError):
    pass


@contextlib.contextmanager
def running_sshd(folder: Path):
    """Start sshd on 127.0.0.1 with keys and configs in ``folder``; yields the Device."""
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("rsync"):
        raise SshdError("the deploy tests need openssh-server, openssh-client and rsync (apt install "
                        "openssh-server openssh-client rsync)")
    folder.mkdir(parents=True, exist_ok=True)
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
SetEnv XDG_CONFIG_HOME={folder / 'config'} GRAPHFLOW_JIT=0
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
    with open(folder / "sshd.log", "w") as log:
        server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while True:
                probe = subprocess.run(["ssh", "-F", str(folder / "ssh_config"), "device", "true"], capture_output=True)
                if probe.returncode == 0:
                    break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SshdError(f"sshd does not answer: {(folder / 'sshd.log').read_text()[-500:]}")
                time.sleep(0.2)
            yield Device(folder / "ssh_config", port, server.pid, config_home=folder / "config")
        finally:
            server.terminate()
            server.wait(timeout=10)
