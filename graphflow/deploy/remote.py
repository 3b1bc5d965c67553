"""Deploying a package to devices and the remote verbs, through :mod:`.transport` and the
device-side :mod:`.agent`.

A deploy: verify the package, make sure DIR/.graphflow/agent.py is current (rsync), ask the
device which files (by sha256) its store lacks, rsync only those (resumable), then have the agent
build releases/VERSION-SHA8 (venv and all), switch DIR/current, prune to --keep releases and, with
--service, (re)start the systemd user unit. Every step is idempotent: a rerun after a failure or
a cut connection picks up where it stopped, and nothing touches DIR/current before the release is
complete.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import DeployError
from .package import extract, package_digest
from .transport import Destination, Transport, parse_destination

AGENT = Path(__file__).with_name("agent.py")
LOAD_KEY = re.compile(r'^Load key "(.+)": (.+)$')  # ssh: a private key it does not use, and why
VIEWER_PORT = 3000


@dataclass
class DeployOptions:
    ssh_config: Path | None = None
    keep: int = 3
    service: bool = False
    foreground: bool = False
    run_args: list[str] | None = None  # None: keep the arguments the device's current release runs with
    python: str = "python3"
    reuse_system_packages: bool = False
    bwlimit: int | None = None


def read_destinations(values: list[str]) -> list[Destination]:
    """``--to`` values: each a destination or an inventory file (one destination a line, # comments)."""
    found = []
    for value in values:
        path = Path(value)
        if path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    try:
                        found.append(parse_destination(line))
                    except DeployError as exc:
                        raise DeployError(f"{path}:{number}: {exc}") from None
        else:
            found.append(parse_destination(value))
    if not found:
        raise DeployError("no destination given (--to [USER@]HOST[:DIR] or an inventory file)")
    if len(set(found)) != len(found):
        raise DeployError("a destination is listed twice")
    return found


def agent_call(transport: Transport, verb: str, *args: str, request: dict | None = None,
               stream: bool = False, read_only: bool = False) -> dict:
    """Run an agent verb; returns its JSON result or raises DeployError with the agent's error line.
    ``stream``: its progress lines go straight to this terminal. ``read_only``: the agent is sent
    on stdin instead of copied to the device, so the verb writes nothing there."""
    if read_only:
        command = transport.remote_command(transport.agent_args(verb, *args, from_stdin=True))
        payload = AGENT.read_text()
    else:
        command = transport.remote_command(transport.agent_args(verb, *args))
        payload = json.dumps(request) if request is not None else ""
    if stream:  # progress lines appear as they come, and are kept for the error message
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        threading.Thread(target=_feed, args=(process.stdin, payload), daemon=True).start()
        stdout_chunks: list[str] = []
        reader = threading.Thread(target=lambda: stdout_chunks.append(process.stdout.read()), daemon=True)
        reader.start()
        kept = []
        for line in process.stderr:
            if not line.startswith("error: "):  # (the error is said once, by the caller's DeployError)
                print(line, end="", file=sys.stderr, flush=True)
            kept.append(line)
        reader.join()
        process.wait()
        process = subprocess.CompletedProcess(command, process.returncode, "".join(stdout_chunks), "".join(kept))
    else:
        process = subprocess.run(command, input=payload, text=True, capture_output=True)
    if process.returncode != 0:
        raise DeployError(_last_error(process.stderr or "", process.returncode, transport))
    lines = process.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        raise DeployError(f"unexpected answer from the device: {lines[-1][:200]!r}") from None


def _feed(pipe, text: str) -> None:
    try:
        pipe.write(text)
        pipe.close()
    except OSError:  # the remote side ended early; its error says why
        pass


def _last_error(stderr: str, code: int, transport: Transport) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1][len("error: "):]
    if code == 255:
        for line in lines:  # ssh's last line says only "Permission denied": a key it skipped says why
            unloadable = LOAD_KEY.match(line)
            if unloadable and unloadable[2] == "bad permissions":
                return f"ssh key {unloadable[1]} is readable by others; chmod 600 {unloadable[1]}"
            if unloadable:
                return f"ssh cannot load key {unloadable[1]} ({unloadable[2]}); {lines[-1]}"
        return f"ssh to {transport.destination.login} failed: {lines[-1] if lines else 'no message'}"
    return lines[-1] if lines else f"exit status {code}"


NOT_WRITABLE = ("Permission denied", "Operation not permitted", "Read-only file system")


def ensure_agent(transport: Transport) -> None:
    made = transport.run(["mkdir", "-p", "--", f"{transport.destination.dir}/.graphflow"], timeout=120)
    if made.returncode != 0:
        raise DeployError(_last_error(made.stderr, made.returncode, transport) + _not_writable(made.stderr, transport))
    with tempfile.TemporaryDirectory(prefix="gf-agent-") as folder:
        (Path(folder) / "agent.py").write_bytes(AGENT.read_bytes())
        copied = transport.rsync(Path(folder), f"{transport.destination.dir}/.graphflow", extra=["--checksum"])
    if copied.returncode != 0:
        raise DeployError(f"copying the agent failed: {_rsync_error(copied)}{_not_writable(copied.stderr, transport)}")


def _not_writable(stderr: str | None, transport: Transport) -> str:
    """What to do when the device folder cannot be written (said after the device's own words)."""
    if not any(reason in (stderr or "") for reason in NOT_WRITABLE):
        return ""
    return (f" ({transport.destination.dir} cannot be written by {transport.destination.user or 'the ssh user'}: choose another "
            f"--to HOST:DIR, or fix its permissions)")


def _rsync_error(process: subprocess.CompletedProcess) -> str:
    lines = [line for line in (process.stderr or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else f"rsync exit status {process.returncode}"


class LocalPackage:
    """A verified package extracted once, with its files laid out by content hash for upload."""

    def __init__(self, package: Path):
        self.path = package
        self._temp = tempfile.TemporaryDirectory(prefix="gf-deploy-")
        root = Path(self._temp.name)
        self.manifest = extract(package, root / "files")
        self.release = f"{self.manifest['app']['version']}-{package_digest(package)[:8]}"
        self.objects = root / "objects"
        self.objects.mkdir()
        self.sizes: dict[str, int] = {}
        for path, entry in self.manifest["files"].items():
            target = self.objects / entry["sha256"]
            if not target.exists():
                os.link(root / "files" / path, target)
            self.sizes[entry["sha256"]] = entry["size"]
        self.root = root

    def staging_of(self, hashes: list[str]) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.root))
        for digest in hashes:
            os.link(self.objects / digest, folder / digest)
        return folder

    def close(self):
        self._temp.cleanup()


@dataclass
class Outcome:
    destination: Destination
    ok: bool
    line: str
    details: dict = field(default_factory=dict)


def deploy_one(local: LocalPackage, destination: Destination, options: DeployOptions, fleet: bool,
               say=print) -> Outcome:
    started = time.monotonic()
    transport = Transport(destination, options.ssh_config, batch=fleet, python=options.python)
    step = "connect"
    try:
        version, _ = probe_device(transport)
        step = "check"
        check_python(transport, version)  # before anything is uploaded
        ensure_agent(transport)
        step = "compare"
        hashes = sorted(local.sizes)
        missing = agent_call(transport, "missing", request={"hashes": hashes})["missing"]
        upload_bytes = sum(local.sizes[h] for h in missing)
        if missing:
            step = "upload"
            if not fleet:
                say(f"uploading {len(missing)} of {len(hashes)} files ({upload_bytes / 1e6:.1f} MB)")
            staging = local.staging_of(missing)
            copied = transport.rsync(staging, f"{destination.dir}/store", progress=not fleet and sys.stderr.isatty(),
                                     bwlimit=options.bwlimit)
            if copied.returncode != 0:
                raise DeployError(f"upload failed ({_rsync_error(copied)}); run the deploy again to resume it")
        step = "install"
        request = {"manifest": local.manifest, "release": local.release, "keep": options.keep,
                   "run_args": options.run_args, "service": options.service, "python": options.python,
                   "reuse_system_packages": options.reuse_system_packages}
        installed = agent_call(transport, "install", request=request, stream=not fleet)
    except DeployError as exc:
        return Outcome(destination, False, f"{destination}: FAILED at {step}: {exc}")
    seconds = time.monotonic() - started
    line = (f"{destination}: ok, current = {local.release} (uploaded {len(missing)} of {len(hashes)} files, "
            f"{upload_bytes / 1e6:.1f} MB; {seconds:.1f} s)")
    service = installed.get("service")
    if service:
        line += f"; service {service['unit']} started"
        if service.get("linger_hint"):
            line += f"; to keep it running without a login: ssh {destination.login} {service['linger_hint']}"
    return Outcome(destination, True, line, installed)


def deploy(package: Path, targets: list[str], options: DeployOptions, say=print) -> int:
    destinations = read_destinations(targets)
    if options.foreground and len(destinations) > 1:
        raise DeployError("--foreground runs the app attached to one device; give one --to")
    if options.foreground and options.service:
        raise DeployError("--foreground and --service exclude each other")
    if options.keep < 1:
        raise DeployError("--keep must be at least 1")
    local = LocalPackage(package)
    try:
        fleet = len(destinations) > 1
        if fleet:
            with ThreadPoolExecutor(max_workers=min(16, len(destinations))) as pool:
                outcomes = list(pool.map(lambda d: deploy_one(local, d, options, True, say), destinations))
        else:
            outcomes = [deploy_one(local, destinations[0], options, False, say)]
    finally:
        local.close()
    for outcome in outcomes:
        say(outcome.line)
    if fleet:
        failed = sum(not o.ok for o in outcomes)
        say(f"{len(outcomes) - failed} of {len(outcomes)} devices deployed" + (f", {failed} failed" if failed else ""))
    if not all(o.ok for o in outcomes):
        return 1
    if options.foreground:
        return run_attached(Transport(destinations[0], options.ssh_config, python=options.python), [])
    return 0


def run_attached(transport: Transport, extra: list[str]) -> int:
    """Run the current release's app on the device with its output here. In a terminal, ssh gets
    a tty (-t): Ctrl-C reaches the app on the device as SIGINT, and it drains. Otherwise the
    app's stdin is a pipe from here: when this process ends or is interrupted, the pipe closes
    and the agent stops the app with SIGINT."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    command = transport.remote_command(transport.agent_args("run", "--attached", *extra), tty=tty)
    process = subprocess.Popen(command, stdin=None if tty else subprocess.PIPE)
    try:
        return process.wait()
    except KeyboardInterrupt:
        if process.stdin is not None:
            process.stdin.close()  # the device sees stdin close and stops the app
        try:
            process.wait(timeout=60)
            print(f"stopped the app on {transport.destination}", file=sys.stderr)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            process.send_signal(signal.SIGTERM)
        return 130  # (as a shell says a command ended by Ctrl-C)


# -- the device's python ---------------------------------------------------------------------------
MIN_PYTHON = (3, 10)
PYTHON_FIX = "sudo apt install python3 (3.10 or newer)"
# Runs on any python, 2.7 included (the agent does not): its version, and whether DIR holds an install.
PROBE = "import os, sys; sys.stdout.write('%d.%d.%d %d\\n' % (tuple(sys.version_info[:3]) + (os.path.isdir(sys.argv[1]),)))"


def _dotted(version: tuple) -> str:
    return ".".join(map(str, version))


def probe_device(transport: Transport) -> tuple[tuple, bool]:
    """(the device python's version, whether DIR/.graphflow exists), in one ssh call."""
    probe = transport.run([transport.python, "-c", PROBE, f"{transport.destination.dir}/.graphflow"], timeout=120)
    if probe.returncode == 127:
        raise DeployError(f"device python {transport.python} not found on {transport.destination.login} "
                          f"(use --python PATH)")
    if probe.returncode != 0:
        raise DeployError(_last_error(probe.stderr, probe.returncode, transport))
    try:
        version, installed = probe.stdout.split()
        return tuple(int(part) for part in version.split(".")), installed == "1"
    except ValueError:
        raise DeployError(f"device python {transport.python} answered {probe.stdout.strip()[:100]!r}, "
                          f"not its version") from None


def check_python(transport: Transport, version: tuple) -> None:
    if version < MIN_PYTHON:
        raise DeployError(f"device python {transport.python} is {_dotted(version)}; graphflow needs "
                          f">= {_dotted(MIN_PYTHON)} (use --python PATH)")


# -- the remote verbs ------------------------------------------------------------------------------
READ_ONLY_VERBS = ("doctor", "status", "list", "logs")


def require_install(transport: Transport, installed: bool) -> None:
    """A remote verb on a folder that holds no install says so (instead of making one)."""
    if not installed:
        raise DeployError(f"no graphflow install at {transport.destination}")


def remote(verb: str, target: str, ssh_config: Path | None, python: str = "python3", follow: bool = False,
           keep: int = 3, local_port: int = VIEWER_PORT, remote_port: int = VIEWER_PORT, say=print) -> int:
    destination = parse_destination(target)
    transport = Transport(destination, ssh_config, python=python)
    if verb == "view":
        return view(transport, local_port, remote_port, say)
    version, installed = probe_device(transport)
    if verb == "doctor" and version < MIN_PYTHON:  # the agent cannot run: the one check that matters
        say(f"MISSING python    Python {_dotted(version)} ({transport.python})")
        say(f"        fix: {PYTHON_FIX} (or --python PATH); the other checks need it")
        return 1
    check_python(transport, version)
    if verb != "doctor":  # doctor looks at the device, installed or not
        require_install(transport, installed)
    read_only = verb in READ_ONLY_VERBS
    if not read_only:
        ensure_agent(transport)
    if verb == "doctor":
        checks = agent_call(transport, "doctor", read_only=True)["checks"]
        for check in checks:
            say(f"{'ok  ' if check['ok'] else 'MISSING'} {check['name']:9} {check['detail']}")
            if check["fix"]:
                say(f"        fix: {check['fix']}")
        return 0 if all(c["ok"] or c["name"] in ("cameras", "linger", "systemd", "packages") for c in checks) else 1
    if verb == "status":
        status = agent_call(transport, "status", read_only=True)
        say(f"{destination}: current {status['current'] or '(none)'}; {len(status['releases'])} release(s); "
            f"service {status['unit'] or '(none)'}: {status['active'] or '-'}; "
            f"{len(status['engines'])} cached TensorRT engine(s)")
        for engine in status["engines"]:
            say(f"  {engine['file']}: TensorRT {engine['tensorrt']}, {engine['gpu']}, L4T {engine['l4t'] or '-'}, "
                f"{engine['precision']}")
        return 0
    if verb == "list":
        for release in agent_call(transport, "list", read_only=True)["releases"]:
            say(f"{'*' if release['current'] else ' '} {release['release']}  installed {release['installed']}")
        return 0
    if verb == "prune":
        result = agent_call(transport, "prune", str(keep))
        removed = f" ({', '.join(result['removed'])})" if result["removed"] else ""
        say(f"{destination}: removed {len(result['removed'])} release(s){removed}; kept {', '.join(result['kept'])}")
        if result.get("removed_newer"):  # after a rollback: say what could have been rolled forward to
            say(f"{destination}: note: {', '.join(result['removed_newer'])} "
                f"{'was' if len(result['removed_newer']) == 1 else 'were'} installed after the current release")
        return 0
    if verb == "rollback":
        result = agent_call(transport, "rollback")
        say(f"{destination}: current = {result['release']} (was {result['previous']})"
            + ("; service restarted" if result["restarted"] else ""))
        return 0
    if verb == "logs":
        command = transport.agent_args("service", "logs", *(["-f"] if follow else []), from_stdin=True)
        return subprocess.run(transport.remote_command(command), input=AGENT.read_text(), text=True).returncode
    if verb in ("start", "stop", "restart"):
        agent_call(transport, "service", verb)
        say(f"{destination}: {verb} done")
        return 0
    raise DeployError(f"unknown remote verb {verb!r}")


# Runs on any python: exit 0 when something accepts connections on 127.0.0.1:PORT, else 3.
PORT_PROBE = ("import socket, sys; s = socket.socket(); s.settimeout(5); "
              "sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0 else 3)")


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def view(transport: Transport, local_port: int, remote_port: int = VIEWER_PORT, say=print) -> int:
    """Forward 127.0.0.1:local_port here to the viewer on the device's loopback (127.0.0.1:
    remote_port, where `graphflow run` serves it by default); nothing on the device binds off
    loopback for it. The address is printed once the tunnel is up. Ends on Ctrl-C."""
    with socket.socket() as here:
        try:
            here.bind(("127.0.0.1", local_port))
        except OSError as exc:
            raise DeployError(f"local port {local_port} is not free ({exc.strerror}); pick another with --port N") from None
    login = transport.destination.login
    serving = transport.run([transport.python, "-c", PORT_PROBE, str(remote_port)], timeout=120)
    if serving.returncode == 3:
        raise DeployError(f"no viewer is serving on {login} port {remote_port} (is the app running with its viewer?)")
    if serving.returncode != 0:
        raise DeployError(_last_error(serving.stderr, serving.returncode, transport))
    forward = ["-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}"]
    with tempfile.TemporaryFile("w+") as errors:  # a file: ssh never blocks on a full pipe
        process = subprocess.Popen(transport.ssh_base() + forward + ["--", login], stdin=subprocess.DEVNULL,
                                   stderr=errors)
        try:
            while not _accepts(local_port) and process.poll() is None:
                time.sleep(0.1)
            if process.poll() is None:
                say(f"viewer of {login}: http://127.0.0.1:{local_port}/  (Ctrl-C ends the tunnel)")
            if process.wait() != 0:
                errors.seek(0)
                raise DeployError(_last_error(errors.read(), process.returncode, transport))
            return 0
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
            return 0
