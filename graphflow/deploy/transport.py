"""The system's ``ssh`` and ``rsync``, always run with argument lists (never a local shell), so the
user's ~/.ssh/config, keys, agent and known_hosts apply; host-key checking is never turned off.

ssh hands the remote command to the remote user's shell as one string: every remote argument is
quoted with :func:`shlex.quote` on top of the validation of hosts, users and directories below,
which refuses anything that is not a plain name (spaces, quotes, ``;``, ``$()``, a leading ``-``).
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import DeployError

HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}\Z")
USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}\Z")
DIR = re.compile(r"^[A-Za-z0-9._/+-]{1,1024}\Z")
DEFAULT_DIR = "graphflow"  # relative to the remote user's home
# A dead link ends a command within about a minute instead of hanging it.
SSH_OPTIONS = ["-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]


@dataclass(frozen=True)
class Destination:
    host: str
    user: str | None = None
    dir: str = DEFAULT_DIR

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return f"{self.login}:{self.dir}"


def parse_destination(text: str) -> Destination:
    """``[USER@]HOST[:DIR]``; DIR is absolute or relative to the remote home (``~/`` allowed)."""
    if not isinstance(text, str) or not text:
        raise DeployError("empty destination: expected [USER@]HOST[:DIR]")
    login, sep, folder = text.partition(":")
    user, at, host = login.rpartition("@")
    if at and not USER.match(user):
        raise DeployError(f"destination {text!r}: user {user!r} is not a plain user name")
    if not HOST.match(host):
        raise DeployError(f"destination {text!r}: host {host!r} is not a plain host name "
                          f"(letters, digits, . _ -; not starting with -)")
    folder = folder if sep else DEFAULT_DIR
    if folder in ("~", "~/"):
        folder = "."
    elif folder.startswith("~/"):
        folder = folder[2:]
    if not DIR.match(folder) or folder.startswith("-") or ".." in folder.split("/"):
        raise DeployError(f"destination {text!r}: directory {folder!r} is not allowed "
                          f"(letters, digits, . _ + - /; no spaces, quotes or ..; not starting with -)")
    return Destination(host, user or None, folder.rstrip("/") or "/")


def check_local_path(path: str | Path | None, what: str) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"{what} {str(path)!r} not found")
    return path.resolve()


class Transport:
    """ssh and rsync to one destination."""

    def __init__(self, destination: Destination, ssh_config: Path | None = None, batch: bool = False,
                 python: str = "python3"):
        self.destination = destination
        self.ssh_config = ssh_config
        self.batch = batch
        if not DIR.match(python) or python.startswith("-"):
            raise DeployError(f"remote python {python!r} is not a plain path")
        self.python = python

    def ssh_base(self) -> list[str]:
        command = ["ssh"] + (["-F", str(self.ssh_config)] if self.ssh_config else []) + SSH_OPTIONS
        if self.batch:
            command += ["-o", "BatchMode=yes"]  # a fleet never waits on a password prompt
        return command

    def remote_command(self, args: list[str], tty: bool = False, forward: list[str] = ()) -> list[str]:
        """The local argument list that runs ``args`` on the device (each argument quoted)."""
        return (self.ssh_base() + (["-t"] if tty else []) + list(forward)
                + ["--", self.destination.login, " ".join(shlex.quote(str(a)) for a in args)])

    def agent_args(self, verb: str, *args: str, from_stdin: bool = False) -> list[str]:
        """The agent's command line: the copy in DIR/.graphflow, or (``from_stdin``) the script sent on stdin."""
        script = "-" if from_stdin else f"{self.destination.dir}/.graphflow/agent.py"
        return [self.python, script, verb, self.destination.dir, *args]

    def run(self, args: list[str], input: str | None = None, timeout: float | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.remote_command(args), input=input, text=True, timeout=timeout,
                                  stdout=subprocess.PIPE if capture else None,
                                  stderr=subprocess.PIPE if capture else None)
        except FileNotFoundError:
            raise DeployError("ssh not found: install the OpenSSH client (apt install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise DeployError(f"{self.destination.login}: no answer within {timeout:.0f} s") from None

    def rsync(self, source: Path, remote_path: str, *, progress: bool = False, bwlimit: int | None = None,
              extra: list[str] = ()) -> subprocess.CompletedProcess:
        """Copy the contents of local folder ``source`` into ``remote_path`` (relative to the
        remote home unless absolute). An interrupted copy keeps its partial files in
        .rsync-partial, and the next one continues from them."""
        ssh = " ".join(shlex.quote(part) for part in self.ssh_base())
        # The remote folders exist already (deploy makes them): no --mkpath, which rsync < 3.2.3 lacks.
        command = ["rsync", "--recursive", "--times", "--partial-dir=.rsync-partial", "--protect-args",
                   "-e", ssh, *extra]
        if bwlimit:
            command.append(f"--bwlimit={int(bwlimit)}")
        if progress:
            command.append("--info=progress2")
        command += [f"{source}/", f"{self.destination.login}:{remote_path}/"]
        try:
            return subprocess.run(command, stdout=None if progress else subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            raise DeployError("rsync not found: install it (apt install rsync)") from None
