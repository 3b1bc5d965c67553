"""graphflow's helper on the device: copied to DIR/.graphflow/agent.py by every deploy and run there
by the device's own python3 (standard library only, Python 3.8 on). The local side
(graphflow/deploy/remote.py) calls it through ssh with each argument quoted, and sends larger
inputs (manifests, hash lists) as JSON on stdin; progress goes to stderr, the result to stdout.

Device layout under DIR::

    store/<sha256>            every uploaded file once, by content (models, wheels, app files)
    releases/VERSION-SHA8/    a complete release: files hard-linked from the store, its venv,
                              release.json; built in releases/.VERSION-SHA8.partial and renamed
                              when complete, so an interrupted install leaves nothing half-made
    current -> releases/ID    switched by renaming a new symlink over it (atomic)
    history                   release ids in the order they were made current (rollback)
    cache/graphflow/engines/  TensorRT engines, shared by every release (XDG_CACHE_HOME=DIR/cache)
    data/                     the app's working directory (its relative outputs land here)
    .graphflow/lock           held (flock) by the verb changing DIR: install, rollback, prune,
                              start/stop/restart; another one fails at once, naming its pid
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

UNIT_PREFIX = "graphflow-"
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")


def main(argv):
    if len(argv) < 2:
        return fail("usage: agent.py VERB DIR [ARGS]")
    verb, root = argv[0], os.path.abspath(os.path.expanduser(argv[1]))
    handler = VERBS.get(verb)
    if handler is None:
        return fail("unknown verb %r" % verb)
    try:
        action = argv[2] if verb == "service" and argv[2:3] in (["start"], ["stop"], ["restart"]) else None
        what = LOCKED_VERBS.get(verb) or action
        lock = hold_lock(root, what) if what else None  # noqa: F841 (held until this process exits)
        return handler(root, argv[2:])
    except AgentError as exc:
        return fail(str(exc))
    except (OSError, ValueError, KeyError) as exc:  # a full disk, a broken request: one line, not a traceback
        return fail("%s failed: %s: %s" % (verb, type(exc).__name__, exc))


class AgentError(Exception):
    pass


# The verbs that change DIR, and what the lock says each is doing. One at a time per DIR: two
# deploys at once would both report success with only one of them current.
LOCKED_VERBS = {"install": "deploy", "rollback": "rollback", "prune": "prune"}


def hold_lock(root, what):
    """Take DIR/.graphflow/lock (exclusive) for the rest of this process, or fail at once naming
    the process that holds it: a deploy takes minutes, waiting behind one is not worth a hang."""
    folder = os.path.join(root, ".graphflow")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = (os.read(fd, 200).decode(errors="replace").split() + ["?", "deploy"])[:2]
        os.close(fd)
        raise AgentError("another %s is in progress on %s (pid %s); try again when it ends"
                         % (holder[1], root, holder[0])) from None
    os.ftruncate(fd, 0)
    os.write(fd, ("%d %s\n" % (os.getpid(), what)).encode())
    return fd


def fail(message):
    print("error: " + message, file=sys.stderr)
    return 1


def say(message):
    _write("stderr", message)


def result(data):
    _write("stdout", json.dumps(data))
    return 0


def _write(name, text):
    """A line to the deploying machine. Its ssh may be gone (Ctrl-C there, a dropped link): the
    work under way still finishes (an install switches, its service restarts), without a word."""
    try:
        print(text, file=getattr(sys, name), flush=True)
    except OSError:  # BrokenPipeError: nobody reads any more; later lines (and the exit's flush) go nowhere
        setattr(sys, name, open(os.devnull, "w"))


def read_stdin_json():
    text = sys.stdin.read()
    return json.loads(text) if text.strip() else {}


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- upload ----------------------------------------------------------------------------------------
def verb_missing(root, args):
    """Which of the hashes on stdin the store lacks."""
    os.close(hold_lock(root, "deploy"))  # another deploy in progress: say so before uploading anything
    wanted = read_stdin_json().get("hashes", [])
    store = os.path.join(root, "store")
    os.makedirs(store, exist_ok=True)
    return result({"missing": [h for h in wanted if not os.path.isfile(os.path.join(store, h))]})


# -- install ---------------------------------------------------------------------------------------
def verb_install(root, args):
    """Build releases/ID from the store (resumable, idempotent), switch current, prune, and
    (--service) install and restart the user unit. stdin: {manifest, release, keep, run_args,
    reuse_system_packages, service}."""
    request = read_stdin_json()
    manifest, release = request["manifest"], request["release"]
    if not SAFE.match(release) or not SAFE.match(manifest["app"]["name"]):
        raise AgentError("unsafe release or app name %r" % release)
    releases = os.path.join(root, "releases")
    final = os.path.join(releases, release)
    os.makedirs(releases, exist_ok=True)
    for folder in ("data", "cache"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    if os.path.isfile(os.path.join(final, "release.json")):
        say("release %s is already installed" % release)
    else:
        check_target(manifest, request)
        build_release(root, manifest, release, request)
    info_path = os.path.join(final, "release.json")
    info = json.load(open(info_path))
    run_args = request.get("run_args")
    if run_args is None:  # not given: the app keeps running with the arguments it runs with now
        run_args = current_run_args(root) if current_release(root) != release else info.get("run_args", [])
    check_run_args(final, info, run_args)
    info["run_args"] = run_args
    write_atomically(info_path, json.dumps(info, indent=1))
    switch(root, release)
    say("current -> releases/%s" % release)
    removed = prune(root, int(request.get("keep", 3)))
    out = {"release": release, "removed": removed, "service": None}
    if request.get("service"):
        out["service"] = install_service(root, manifest["app"]["name"], sys.executable)
    return result(out)


def check_run_args(release_dir, info, run_args):
    """The arguments the app is to run with, parsed as the release's own ``graphflow run`` parses
    them, before the switch: a misspelt option would make the service fail at each start (and
    later deploys keep the arguments)."""
    python = os.path.join(release_dir, "venv", "bin", "python")
    app = os.path.join(release_dir, info["app"]["file"])
    parse = ("import sys; from graphflow.cli import _parser\n"
             "try:\n    parser = _parser()\nexcept Exception:\n    sys.exit(0)  # another graphflow: not checked here\n"
             "parser.prog = 'graphflow'; parser.parse_args(sys.argv[1:])")
    checked = subprocess.run([python, "-c", parse, "run", app] + list(run_args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
    if checked.returncode != 0:
        lines = checked.stdout.strip().splitlines()
        raise AgentError("--app-args %s: %s (nothing switched)" % (" ".join(run_args), lines[-1] if lines else
                                                                  "refused by graphflow run"))


def check_target(manifest, request):
    """A wheelhouse holds wheels for one platform and Python: refuse a device that runs others
    before anything is installed. Without one the app still installs (its own files run anywhere),
    but its requirements were pinned for its target: say so."""
    python = request.get("python") or sys.executable
    version = python_probe(python, "import sys; print('%d.%d' % sys.version_info[:2])") or "unknown"
    machine = os.uname().machine
    wanted_arch = manifest.get("platform", "").split("_", 3)[-1]  # manylinux_2_35_aarch64 -> aarch64
    if version == manifest["python"] and (not wanted_arch or wanted_arch == machine):
        return
    differs = "the package is for %s (Python %s, %s); this device runs Python %s on %s" % (
        manifest["target"], manifest["python"], wanted_arch, version, machine)
    if not request.get("reuse_system_packages") and any(p.startswith("wheelhouse/") for p in manifest["files"]):
        raise AgentError(differs + ": package the app for this device's target")
    say("warning: %s; it installs, but its requirements were pinned for %s: package it for this device's "
        "target (graphflow package --target)" % (differs, manifest["target"]))


def build_release(root, manifest, release, request):
    store = os.path.join(root, "store")
    partial = os.path.join(root, "releases", "." + release + ".partial")
    final = os.path.join(root, "releases", release)
    os.makedirs(partial, exist_ok=True)  # a rerun continues in the same folder
    for path, entry in sorted(manifest["files"].items()):
        if ".." in path.split("/") or path.startswith("/"):
            raise AgentError("unsafe path in the manifest: %r" % path)
        source = os.path.join(store, entry["sha256"])
        if not os.path.isfile(source):
            raise AgentError("%s (%s) is not in the store: deploy again to upload it" % (path, entry["sha256"][:12]))
        dest = os.path.join(partial, path)
        if os.path.isfile(dest):
            continue
        if sha256_file(source) != entry["sha256"]:
            os.remove(source)  # corrupt: the next deploy uploads it again
            raise AgentError("%s arrived corrupt (sha256 differs); deploy again" % path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        link_or_copy(source, dest + ".tmp")
        os.replace(dest + ".tmp", dest)
    models = os.path.join(partial, "models")
    for name, digest in manifest.get("models", {}).items():  # the model path: each model by its name
        if not SAFE.match(name) or not re.match(r"^[0-9a-f]{64}\Z", digest):
            raise AgentError("unsafe model entry in the manifest: %r" % name)
        dest = os.path.join(models, name)
        if not os.path.isfile(dest):
            link_or_copy(os.path.join(partial, "models", digest), dest + ".tmp")
            os.replace(dest + ".tmp", dest)
    write_atomically(os.path.join(partial, "manifest.json"), json.dumps(manifest, indent=1))
    make_venv(partial, manifest, request)
    point_scripts_at(os.path.join(partial, "venv"), os.path.join(final, "venv"))
    info = {"release": release, "app": manifest["app"], "target": manifest["target"],
            "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "installed_ns": time.time_ns()}
    write_atomically(os.path.join(partial, "release.json"), json.dumps(info, indent=1))
    os.rename(partial, final)  # complete: only now does releases/ID exist


# where a script names its venv: its interpreter (a shebang, or pip's exec line for long paths), or
# the activate scripts' VIRTUAL_ENV (sh, csh, fish)
VENV_OF_SCRIPT = re.compile(rb"(/[^\s'\"]+)/bin/python[0-9.]*|VIRTUAL_ENV[ =]+[\"']?(/[^\s'\"]+)")


def point_scripts_at(venv, final_venv):
    """The venv's scripts (entry points such as bin/graphflow, the activate scripts) name the
    folder the venv was made in: releases/.ID.partial/venv, or for a cloned venv the donor's too.
    Point them at the venv's final place, each as a new file: a cloned script is a hard link that
    the donor release keeps as it is."""
    bin_dir = os.path.join(venv, "bin")
    scripts = {}
    for name in os.listdir(bin_dir):
        path = os.path.join(bin_dir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" not in data:  # text, not a binary
            scripts[path] = data
    made_in = set()
    for data in scripts.values():
        made_in.update(m.group(1) or m.group(2) for m in VENV_OF_SCRIPT.finditer(data))
    made_in = sorted((old for old in made_in if old != final_venv.encode() and old.endswith(b"/venv")),
                     key=len, reverse=True)
    for path, data in scripts.items():
        moved = data
        for old in made_in:
            moved = moved.replace(old, final_venv.encode())
        if moved != data:
            temp = path + ".tmp%d" % os.getpid()
            with open(temp, "wb") as f:
                f.write(moved)
            os.chmod(temp, os.stat(path).st_mode & 0o7777)
            os.replace(temp, path)


def link_or_copy(source, dest):
    if os.path.exists(dest):
        os.remove(dest)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def make_venv(release_dir, manifest, request):
    """The release's venv: the requirements, then the app's wheels. A venv of an earlier release
    made for the same requirements, wheelhouse, Python and options is cloned by hard links (a
    Jetson then skips reinstalling CuPy, OpenCV, ONNX Runtime, numpy) and gets only the new app
    wheels: files pip replaces are unlinked, never rewritten, so the earlier release is unchanged."""
    venv = os.path.join(release_dir, "venv")
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".graphflow-ready")
    if os.path.isfile(marker):
        return
    if os.path.isdir(venv):
        shutil.rmtree(venv)  # an interrupted venv: start it again
    reuse = bool(request.get("reuse_system_packages"))
    system_site = bool(manifest.get("jetson") or reuse)
    base = request.get("python") or sys.executable
    # The device's Python may itself be a venv (on a Jetson, often one made to reach TensorRT,
    # with numpy and CuPy installed into it): a venv made from it sees only its base interpreter's
    # packages, so its own are added to the release's venv by a .pth file.
    base_venv_site = venv_site_packages(base) if system_site else []
    key = environment_key(manifest, base, system_site, reuse, base_venv_site)
    wheels = sorted(os.path.join(release_dir, "wheels", w) for w in os.listdir(os.path.join(release_dir, "wheels")))
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
    donor = find_venv(os.path.dirname(release_dir), key)
    if donor is not None and clone_venv(donor, venv):
        say("reusing the venv of release %s (same requirements); installing the app's wheels" % os.path.basename(
            os.path.dirname(donor)))
        run_step(pip + ["--no-deps", "--no-index", "--force-reinstall"] + wheels, "pip install")
    else:
        # A venv that sees the system site packages can use the system's pip: no copy of pip to
        # install into it (ensurepip takes most of a venv's creation time).
        system_pip = system_site and python_probe(base, "import pip") is not None
        say("creating the venv%s" % (" (with the system site packages)" if system_site else ""))
        command = [base, "-m", "venv"] + (["--system-site-packages"] if system_site else []) + \
            (["--without-pip"] if system_pip else [])
        run_step(command + [venv], "python3 -m venv")
        if base_venv_site:
            see_packages_of(python, base_venv_site)
        house = os.path.join(release_dir, "wheelhouse")
        if reuse:
            # The device's own Python packages serve the requirements (the venv sees them); only the
            # app's wheels go in, without their dependencies: no index is needed.
            say("installing the app's wheels (--no-deps; requirements from the system packages)")
        else:
            offline = ["--no-index", "--find-links", house] if os.path.isdir(house) else []
            say("installing the requirements%s" % (" from the wheelhouse (offline)" if offline else " from PyPI"))
            run_step(pip + offline + ["-r", os.path.join(release_dir, "requirements.txt")], "pip install -r requirements.txt")
            say("installing the app's wheels")
        run_step(pip + ["--no-deps", "--no-index", "--force-reinstall"] + wheels, "pip install")
    # The app validates in its venv (every node pack imports, every param fits) before anything switches.
    run_step([python, "-m", "graphflow.cli", "validate", os.path.join(release_dir, manifest["app"]["file"])],
             "graphflow validate in the new venv")
    with open(marker, "w") as f:  # a new file (a cloned marker was unlinked): the donor keeps its own
        f.write(key + "\n")


def environment_key(manifest, python, system_site, reuse, base_venv_site=()):
    files = manifest["files"]
    parts = {"requirements": files.get("requirements.txt", {}).get("sha256"),
             "wheelhouse": sorted(e["sha256"] for p, e in files.items() if p.startswith("wheelhouse/")),
             "python": os.path.realpath(shutil.which(python) or python), "system_site": system_site, "reuse": reuse}
    if base_venv_site:  # two venvs share their interpreter's realpath, not their packages
        parts["base_venv_site"] = list(base_venv_site)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def venv_site_packages(python):
    """The site-packages folders of ``python`` when it runs in a venv, else []."""
    out = python_probe(python, "import json, site, sys; "
                               "print(json.dumps(site.getsitepackages() if sys.prefix != sys.base_prefix else []))")
    try:
        folders = json.loads(out) if out else []
    except ValueError:
        return []
    return [f for f in folders if isinstance(f, str) and os.path.isdir(f)]


def see_packages_of(python, folders):
    """Let the venv of ``python`` import from ``folders`` too, after its own packages."""
    purelib = python_probe(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    if not purelib:
        raise AgentError("cannot find the new venv's site-packages (python3 -m venv made no usable venv)")
    with open(os.path.join(purelib, "graphflow-base-venv.pth"), "w") as f:
        f.write("".join(folder + "\n" for folder in folders))
    say("the venv also sees the packages of %s (the device's python is a venv)" % ", ".join(folders))


def find_venv(releases, key):
    for name in sorted(os.listdir(releases), reverse=True):
        candidate = os.path.join(releases, name, "venv")
        if name.startswith("."):
            continue
        try:
            if open(os.path.join(candidate, ".graphflow-ready")).read().strip() == key:
                return candidate
        except OSError:
            continue
    return None


def clone_venv(donor, venv):
    try:
        shutil.copytree(donor, venv, symlinks=True, copy_function=os.link)
        os.remove(os.path.join(venv, ".graphflow-ready"))
        return True
    except OSError as exc:  # another file system: a fresh venv instead
        say("cannot reuse %s (%s); making a new venv" % (donor, exc))
        shutil.rmtree(venv, ignore_errors=True)
        return False


def run_step(command, what):
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if process.returncode != 0:
        tail = " | ".join(process.stdout.strip().splitlines()[-3:])
        raise AgentError("%s failed (exit %d): %s" % (what, process.returncode, tail))


def write_atomically(path, text):
    temp = path + ".tmp%d" % os.getpid()
    with open(temp, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def switch(root, release):
    """Point current at releases/RELEASE: a new symlink renamed over the old one (atomic)."""
    link = os.path.join(root, "current")
    temp = os.path.join(root, ".current.tmp%d" % os.getpid())
    if os.path.lexists(temp):
        os.remove(temp)
    os.symlink(os.path.join("releases", release), temp)
    os.replace(temp, link)
    history = read_history(root)
    if not history or history[-1] != release:
        history.append(release)
    write_atomically(os.path.join(root, "history"), "\n".join(history[-100:]))


def current_run_args(root):
    try:
        return json.load(open(os.path.join(root, "current", "release.json"))).get("run_args", [])
    except (OSError, ValueError):
        return []


def read_history(root):
    try:
        return [line for line in open(os.path.join(root, "history")).read().split() if line]
    except OSError:
        return []


def current_release(root):
    link = os.path.join(root, "current")
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def installed_releases(root):
    folder = os.path.join(root, "releases")
    if not os.path.isdir(folder):
        return []
    found = [name for name in os.listdir(folder) if not name.startswith(".")
             and os.path.isfile(os.path.join(folder, name, "release.json"))]
    return sorted(found, key=lambda n: install_order(folder, n))


def install_order(folder, name):
    """When the release was built (not when it was last made current: release.json is rewritten
    then, and a rollback takes the newer release out of the history)."""
    try:
        info = json.load(open(os.path.join(folder, name, "release.json")))
    except (OSError, ValueError):
        info = {}
    return info.get("installed_ns") or 0, info.get("installed") or "", name


def prune(root, keep):
    """Keep the current release and the ``keep - 1`` most recently installed others; drop store
    objects no kept release uses. Returns the removed releases, oldest first."""
    if keep < 1:
        raise AgentError("keep must be at least 1 (the current release is always kept)")
    current = current_release(root)
    history = read_history(root)
    releases = installed_releases(root)  # oldest first
    others = [r for r in releases if r != current]
    kept = set(others[-(keep - 1):] if keep > 1 else []) | {current}
    removed = [r for r in releases if r not in kept]
    for name in removed:
        shutil.rmtree(os.path.join(root, "releases", name), ignore_errors=True)
    used = set()
    for name in kept:
        try:
            manifest = json.load(open(os.path.join(root, "releases", name, "manifest.json")))
            used |= {e["sha256"] for e in manifest["files"].values()}
        except (OSError, ValueError, TypeError):
            pass
    store = os.path.join(root, "store")
    if os.path.isdir(store):
        for name in os.listdir(store):
            if name not in used and not name.startswith("."):
                os.remove(os.path.join(store, name))
    if removed:
        write_atomically(os.path.join(root, "history"),
                         "\n".join(h for h in history if h not in removed))
    return removed


def verb_prune(root, args):
    keep = int(args[0]) if args else 3
    releases = installed_releases(root)
    current = current_release(root)
    newer = releases[releases.index(current) + 1:] if current in releases else []
    removed = prune(root, keep)
    return result({"removed": removed, "kept": installed_releases(root),
                   "removed_newer": [r for r in removed if r in newer]})


def verb_list(root, args):
    current = current_release(root)
    out = []
    for name in installed_releases(root):
        info = json.load(open(os.path.join(root, "releases", name, "release.json")))
        out.append({"release": name, "installed": info.get("installed"), "current": name == current})
    return result({"releases": out})


def verb_rollback(root, args):
    """Switch current to the release made current before it, and restart the service if any.
    The rolled-back release leaves the history, so a second rollback goes one further back."""
    current = current_release(root)
    installed = set(installed_releases(root))
    history = [h for h in read_history(root) if h in installed]
    if current in history:
        history = history[:len(history) - 1 - history[::-1].index(current)]
    history = [h for h in history if h != current]
    if not history:
        raise AgentError("no earlier release to roll back to (installed: %s)" % ", ".join(sorted(installed)))
    target = history[-1]
    write_atomically(os.path.join(root, "history"), "\n".join(history))
    switch(root, target)
    say("current -> releases/%s (was %s)" % (target, current))
    restarted = False
    unit = unit_name_of(root)
    if unit and unit_exists(unit):
        try:
            systemctl(["restart", unit])
        except AgentError as exc:
            raise AgentError("rolled back: current -> releases/%s (was %s), but the service did not restart: %s"
                             % (target, current, exc))
        restarted = True
    return result({"release": target, "previous": current, "restarted": restarted})


# -- running ---------------------------------------------------------------------------------------
def app_command(root):
    release_dir = os.path.realpath(os.path.join(root, "current"))
    if not os.path.isfile(os.path.join(release_dir, "release.json")):
        raise AgentError("nothing is deployed in %s (no current release)" % root)
    info = json.load(open(os.path.join(release_dir, "release.json")))
    python = os.path.join(release_dir, "venv", "bin", "python")
    command = [python, "-m", "graphflow.cli", "run", os.path.join(release_dir, info["app"]["file"])]
    command += list(info.get("run_args", []))
    env = dict(os.environ, GRAPHFLOW_MODEL_PATH=os.path.join(release_dir, "models"),
               XDG_CACHE_HOME=os.path.join(root, "cache"), PYTHONUNBUFFERED="1")
    return command, env, os.path.join(root, "data")


def verb_run(root, args):
    """Run the current release's app. --attached: stop it (SIGINT: it drains) when stdin closes,
    i.e. when the ssh connection that started it ends (Ctrl-C on the user's side)."""
    command, env, cwd = app_command(root)
    extra = [a for a in args if a != "--attached"]
    os.makedirs(cwd, exist_ok=True)
    if "--attached" not in args:
        os.chdir(cwd)
        os.execve(command[0], command + extra, env)  # the service: systemd watches the app itself
    child = subprocess.Popen(command + extra, env=env, cwd=cwd)

    def watch_stdin():
        try:
            while os.read(0, 4096):  # unbuffered: no lock held at interpreter shutdown
                pass
        except (OSError, ValueError):
            pass
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    threading.Thread(target=watch_stdin, daemon=True).start()
    # With a tty, Ctrl-C signals the whole foreground group: the app gets its own SIGINT and drains;
    # the agent waits for it. A hang-up (the connection dropped) stops the app the same way.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: child.send_signal(signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    return child.wait()


# -- the systemd user unit -------------------------------------------------------------------------
def unit_text(root, app, python):
    return """[Unit]
Description=graphflow app %(app)s (%(root)s)
After=network-online.target

[Service]
Type=simple
ExecStart=%(python)s %(agent)s run %(root)s
Restart=on-failure
RestartSec=5
KillSignal=SIGINT
TimeoutStopSec=30

[Install]
WantedBy=default.target
""" % {"app": app, "root": root, "python": python, "agent": os.path.join(root, ".graphflow", "agent.py")}


def unit_dir():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user")


def unit_name_of(root):
    try:
        return open(os.path.join(root, ".graphflow", "unit")).read().strip() or None
    except OSError:
        return None


def user_env():
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", "/run/user/%d" % os.getuid())
    return env


def systemctl(args):
    process = subprocess.run(["systemctl", "--user"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, env=user_env())
    if process.returncode != 0:
        lines = process.stdout.strip().splitlines()
        why = lines[-1] if lines else process.returncode
        hint = (" (no systemd user manager for this user: %s)" % no_manager_fix()
                if "Failed to connect to bus" in str(why) else "")
        raise AgentError("systemctl --user %s failed: %s%s" % (" ".join(args), why, hint))
    return process.stdout


def user_name():
    return os.environ.get("USER") or str(os.getuid())


def no_manager_fix():
    return ("log in on the device, or `sudo loginctl enable-linger %s` to have one at boot, for --service; "
            "or deploy with --foreground" % user_name())


def unit_exists(unit):
    return os.path.isfile(os.path.join(unit_dir(), unit))


def unit_name(root, app):
    """graphflow-APP.service for the default folder (~/graphflow); another folder's name adds a
    digest of its path, so two folders with the same app on one device do not share one unit."""
    if os.path.realpath(root) == os.path.realpath(os.path.expanduser("~/graphflow")):
        return UNIT_PREFIX + app + ".service"
    digest = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:8]
    return "%s%s-%s.service" % (UNIT_PREFIX, app, digest)


def install_service(root, app, python):
    unit = unit_name(root, app)
    os.makedirs(unit_dir(), exist_ok=True)
    path = os.path.join(unit_dir(), unit)
    retire_other_unit(root, unit)
    write_atomically(path, unit_text(root, app, python).rstrip("\n"))
    write_atomically(os.path.join(root, ".graphflow", "unit"), unit)
    out = {"unit": unit, "path": path, "started": False, "linger_hint": None, "verify": None}
    if shutil.which("systemd-analyze"):
        # --user needs the user's runtime folder; without one (no user session) verify as a system unit.
        scope = ["--user"] if os.path.isdir(user_env()["XDG_RUNTIME_DIR"]) else []
        check = subprocess.run(["systemd-analyze"] + scope + ["verify", path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, env=user_env())
        if check.returncode != 0:
            raise AgentError("the unit %s does not verify: %s" % (path, " | ".join(check.stdout.strip().splitlines()[-2:])))
        out["verify"] = "ok"
    try:
        if not shutil.which("systemctl"):
            raise AgentError("systemctl not found")
        systemctl(["daemon-reload"])
        systemctl(["enable", unit])
        systemctl(["restart", unit])
    except AgentError as exc:
        raise AgentError("the release is current and its unit is written to %s, but the service did not start: %s"
                         % (path, exc))
    out["started"] = True
    user = user_name()
    linger = subprocess.run(["loginctl", "show-user", user, "-p", "Linger"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, universal_newlines=True) if shutil.which("loginctl") else None
    if linger is None or "Linger=yes" not in linger.stdout:
        out["linger_hint"] = "sudo loginctl enable-linger %s" % user
    return out


def retire_other_unit(root, unit):
    """Another app's unit that ran this folder's ``current`` (its app was replaced here): stop,
    disable and remove it, so that one unit runs the folder (two ran it, writing the same data/)."""
    previous = unit_name_of(root)
    if previous is None or previous == unit or not re.match(r"^graphflow-[A-Za-z0-9_.-]+\.service\Z", previous):
        return
    if shutil.which("systemctl"):
        for command in (["stop", previous], ["disable", previous]):
            try:
                systemctl(command)
            except AgentError:  # not loaded, or no user manager: the file below is what matters
                pass
    old = os.path.join(unit_dir(), previous)
    if os.path.exists(old):
        os.remove(old)
    say("removed the service %s of the app deployed here before" % previous)


def verb_service(root, args):
    """start | stop | restart | status of the user unit; logs [-f]."""
    action = args[0]
    unit = unit_name_of(root)
    if unit is None:
        raise AgentError("no service is installed for %s (deploy with --service)" % root)
    if action == "logs":
        if not journal_files():  # journalctl would print only "-- No entries --" and exit 0
            raise AgentError("this device keeps no systemd journal (no files in /var/log/journal or "
                             "/run/log/journal): the service's output is not recorded")
        command = ["journalctl", "--user", "-u", unit, "--no-pager", "-n", "200"] + (["-f"] if "-f" in args else [])
        os.execvpe(command[0], command, user_env())
    if action == "status":
        process = subprocess.run(["systemctl", "--user", "is-active", unit], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, universal_newlines=True, env=user_env())
        return result({"unit": unit, "active": process.stdout.strip() or "unknown"})
    systemctl([action, unit])
    return result({"unit": unit, "action": action})


def journal_files():
    """Whether journald keeps any journal here (persistent or volatile)."""
    for folder in ("/var/log/journal", "/run/log/journal"):
        for _, _, files in os.walk(folder):
            if any(name.endswith(".journal") for name in files):
                return True
    return False


def verb_status(root, args):
    unit = unit_name_of(root)
    active = None
    if unit and shutil.which("systemctl"):
        process = subprocess.run(["systemctl", "--user", "is-active", unit], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, universal_newlines=True, env=user_env())
        active = process.stdout.strip() or "unknown"
    return result({"current": current_release(root), "releases": installed_releases(root),
                   "unit": unit, "active": active, "engines": cached_engines(root)})


def cached_engines(root):
    """The TensorRT engines in the cache shared by every release (nodes/ml/engine_cache.py)."""
    folder = os.path.join(root, "cache", "graphflow", "engines")
    engines = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".engine"):
            try:
                key = json.load(open(os.path.join(folder, name + ".key.json")))
            except (OSError, ValueError):
                key = {}
            engines.append({"file": name, "tensorrt": key.get("tensorrt"), "gpu": key.get("gpu"),
                            "l4t": key.get("l4t"), "precision": key.get("precision")})
    return engines


# -- doctor ----------------------------------------------------------------------------------------
def verb_doctor(root, args):
    checks = []

    def check(name, ok, detail, fix=None):
        checks.append({"name": name, "ok": bool(ok), "detail": detail, "fix": None if ok else fix})

    tegra = read_text("/etc/nv_tegra_release")
    model = read_text("/proc/device-tree/model").strip("\0\n ")
    check("jetpack", tegra, (tegra.splitlines()[0].strip("# ") if tegra else "no /etc/nv_tegra_release (not a Jetson)")
          + (", " + model if model else ""), "flash JetPack 6 (SDK Manager) — needed only for TensorRT on a Jetson")
    check("python", sys.version_info >= (3, 10), "Python %d.%d.%d (%s)" % (sys.version_info[:3] + (sys.executable,)),
          "sudo apt install python3 (3.10 or newer), or --python PATH")
    venv = subprocess.run([sys.executable, "-c", "import ensurepip, venv"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0
    check("venv", venv, "python3 -m venv works" if venv else "python3 has no venv/ensurepip",
          "sudo apt install python3-venv python3-pip")
    check("rsync", shutil.which("rsync"), shutil.which("rsync") or "rsync not found", "sudo apt install rsync")
    cuda = read_text("/usr/local/cuda/version.json")
    cuda_version = None
    if cuda:
        try:
            cuda_version = json.loads(cuda)["cuda"]["version"]
        except (ValueError, KeyError, TypeError):
            cuda_version = "unknown version"
    check("cuda", cuda_version, "CUDA %s" % cuda_version if cuda_version else "no /usr/local/cuda",
          "sudo apt install nvidia-jetpack (JetPack's CUDA, cuDNN and TensorRT)")
    trt = python_probe(sys.executable, "import tensorrt; print(tensorrt.__version__)")
    check("tensorrt", trt, "TensorRT %s (system Python)" % trt if trt else "the system python3 cannot import tensorrt",
          "sudo apt install python3-libnvinfer python3-libnvinfer-dev")
    venv_python = os.path.join(root, "current", "venv", "bin", "python")
    cupy = python_probe(venv_python if os.path.exists(venv_python) else sys.executable,
                        "import cupy; print(cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')")
    check("cupy", cupy, "CuPy %s" % cupy if cupy else "CuPy does not import or sees no CUDA device",
          "deploy a jetson-jp6 package (its requirements include cupy-cuda12x) or pip install cupy-cuda12x")
    cameras = sorted(n for n in os.listdir("/dev") if n.startswith("video")) if os.path.isdir("/dev") else []
    check("cameras", cameras, ", ".join("/dev/" + c for c in cameras) or "no /dev/video*",
          "connect a camera; for a USB camera: sudo usermod -aG video $USER")
    probe = root
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:  # the folder, or where it will be made
        probe = os.path.dirname(probe)
    usage = shutil.disk_usage(probe)
    check("disk", usage.free > 2 << 30, "%.1f GB free at %s" % (usage.free / 1e9, probe),
          "free disk space (a release with its venv takes about 1 GB)")
    writable = os.access(probe, os.W_OK | os.X_OK)
    check("folder", writable, "%s %s by %s" % (root, "can be written" if writable else "cannot be written",
                                              user_name()),
          "choose another --to HOST:DIR, or fix the permissions of %s" % probe)
    needed = ["numpy", "cv2", "onnxruntime", "numba", "msgpack", "zmq", "jsonschema", "aiohttp", "mcap"]
    lacking = python_probe(sys.executable, "import importlib.util as u; print(' '.join(m for m in %r if u.find_spec(m) "
                                           "is None) or '-')" % (needed,))
    check("packages", lacking == "-", "%s has graphflow's dependencies" % sys.executable if lacking == "-" else
          "%s lacks %s" % (sys.executable, lacking or "(could not ask it)"),
          "matters only for deploy --reuse-system-packages: install them for this Python, or deploy a "
          "--wheelhouse package (or one whose device has PyPI)")
    manager = subprocess.run(["systemctl", "--user", "show-environment"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True,
                             env=user_env()) if shutil.which("systemctl") else None
    runs = manager is not None and manager.returncode == 0
    said = manager.stdout.strip().splitlines() if manager is not None else ["systemctl not found"]
    check("systemd", runs, "a systemd user manager runs for %s (--service works)" % user_name() if runs else
          "no systemd user manager: %s" % (said[-1] if said else "systemctl --user failed"), no_manager_fix())
    linger = subprocess.run(["loginctl", "show-user", user_name(), "-p", "Linger"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            universal_newlines=True).stdout.strip() if shutil.which("loginctl") else ""
    check("linger", linger == "Linger=yes", linger or "loginctl not available (no systemd-logind)",
          "sudo loginctl enable-linger %s  (the service then runs without a login)" % user_name() if linger else
          "without systemd-logind a --service app does not start at boot: run it with --foreground (or under "
          "another supervisor)")
    return result({"checks": checks})


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def python_probe(python, code):
    try:
        process = subprocess.run([python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return process.stdout.strip() if process.returncode == 0 else None


VERBS = {"missing": verb_missing, "install": verb_install, "list": verb_list, "prune": verb_prune,
         "rollback": verb_rollback, "run": verb_run, "service": verb_service, "status": verb_status,
         "doctor": verb_doctor}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
