"""The .gfpkg package: one tar file that holds everything an app needs on a device.

Layout (all paths relative, every file's sha256 in the manifest)::

    manifest.json          format, app name/version/file, graphflow version, target, Python,
                           models {name: sha256}, files {path: {sha256, size}}
    app/                   the app file with config overlays merged, and its subgraph files
    wheels/                graphflow (its node packs ship inside it) and any other pack wheel
    models/<sha256>        each referenced model once, by content hash
    requirements.txt       pinned requirements for the target
    wheelhouse/            (--wheelhouse) every wheel the requirements need on the target

A device installs from it without the internet when it has a wheelhouse (or reuses its own
packages). ``check_package`` verifies the hashes and resolves the wheelhouse offline with pip.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ..files import open_atomically, sha256_file
from . import DeployError
from .targets import TARGETS, Target, wheel_extras, wheel_requirements

FORMAT = 1
MANIFEST = "manifest.json"
SUFFIX = ".gfpkg"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")  # app names and versions
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")  # as the device agent's SAFE
MODEL_PARAM_SUFFIX = "model_file_path"  # params naming a model on the model search path
REPO_ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS_MINIMUM = 77  # as pyproject.toml's build-system says (the SPDX license string needs 77)


def _warn_of_a_relative_input(spec) -> None:
    """The app file's own input path, relative to where it runs (``../shared/data/images``),
    means nothing on a device: say so once the package is written."""
    for target_param in spec.io.get("input", ()):
        node_component, _, param = target_param.rpartition("/")
        value = spec.config.get(node_component, {}).get(param)
        if isinstance(value, str) and value and ":" not in value and not Path(value).is_absolute():
            print(f"warning: the app reads its input from {value!r} ({target_param}), a path relative to where "
                  f"it runs, which the package does not hold: give the device's with deploy --app-args "
                  f"'--input PATH' (or camera:N)", file=sys.stderr)


def check_name(value: str, what: str) -> str:
    """App names and versions become file and directory names on the device: a safe charset only."""
    if not NAME_PATTERN.match(value or ""):
        raise DeployError(f"{what} {value!r} is not allowed: use letters, digits and . _ + - "
                          f"(64 at most), starting with a letter or digit")
    return value


# -- building ------------------------------------------------------------------------------------
def build_package(app: Path, out_dir: Path, *, target: str, version: str = "0.0.0",
                  overlays: list[Path] = (), wheelhouse: bool = False,
                  graphflow_wheel: Path | None = None, extras: list[str] = (), progress=print) -> Path:
    """Write ``out_dir/NAME-VERSION.gfpkg`` for ``app``; returns its path."""
    from ..loader import AppInvalid, load_app, read_json
    from ..models import find_model

    if target not in TARGETS:
        raise DeployError(f"unknown target {target!r} (one of: {', '.join(TARGETS)})")
    spec_target = TARGETS[target]
    check_name(version, "version")
    if graphflow_wheel is not None:
        _check_graphflow_wheel(graphflow_wheel)
    try:
        spec = load_app(app, list(overlays))
    except AppInvalid as exc:
        raise DeployError(f"{app} is not a valid app: {exc.errors[0]}"
                          + (f" (and {len(exc.errors) - 1} more problems)" if len(exc.errors) > 1 else "")) from None
    name = check_name(spec.name, "app name")
    result = _writable_target(out_dir, f"{name}-{version}{SUFFIX}")  # before the long work, not after

    files: dict[str, bytes | Path] = {}  # package path -> content or file
    app_files = _collect_app_files(app, read_json)
    top = json.loads(json.dumps(app_files[app.resolve()][1]))
    for overlay in overlays:  # the composed app: overlays merged into the packaged app file
        data = read_json(Path(overlay), "config file")
        data = data.get("config", {}) if "graph" in data else data
        for node, components in data.items():
            for comp, params in components.items():
                top.setdefault("config", {}).setdefault(node, {}).setdefault(comp, {}).update(params)
    app_files[app.resolve()] = (app_files[app.resolve()][0], top)

    models: dict[str, str] = {}
    for component, values in spec.config.items():
        for param, value in values.items():
            if param.endswith(MODEL_PARAM_SUFFIX) and isinstance(value, str) and value:
                try:
                    path = find_model(value)
                except FileNotFoundError as exc:
                    raise DeployError(f"{component}/{param}: {exc}") from None
                digest = sha256_file(path)
                if not MODEL_NAME.match(Path(value).name):
                    raise DeployError(f"{component}/{param}: model file name {Path(value).name!r} is not "
                                      f"allowed on a device: use letters, digits and . _ + - (rename the file)")
                if models.get(Path(value).name, digest) != digest:
                    raise DeployError(f"two different models are both named {Path(value).name!r}")
                models[Path(value).name] = digest
                files[f"models/{digest}"] = path
    _bare_model_names(app_files)
    _local_pack_paths(app_files)
    for path, (packaged, data) in app_files.items():
        files[f"app/{packaged}"] = (json.dumps(data, indent=2) + "\n").encode()
    for pack in _local_packs(spec):
        if pack.is_file():
            files[f"app/{pack.name}"] = pack
            continue
        for source in sorted(pack.rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                files[f"app/{pack.name}/{source.relative_to(pack)}"] = source

    with tempfile.TemporaryDirectory(prefix="gfpkg-") as temp:
        temp = Path(temp)
        wheel = graphflow_wheel or build_graphflow_wheel(temp / "wheels", progress)
        files[f"wheels/{wheel.name}"] = wheel
        unknown = sorted(set(extras) - wheel_extras(wheel))
        if unknown:
            raise DeployError(f"graphflow has no extra {', '.join(map(repr, unknown))} "
                              f"(it has: {', '.join(sorted(wheel_extras(wheel)))})")
        requirements = spec_target.requirements(wheel_requirements(wheel, set(spec_target.extras) | set(extras)))
        if wheelhouse:
            house = download_wheelhouse(spec_target, requirements, temp / "wheelhouse", progress)
            for whl in sorted(house.glob("*.whl")):
                files[f"wheelhouse/{whl.name}"] = whl
            requirements = _pins_from_wheels(sorted(house.glob("*.whl")))
        files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()

        import graphflow
        manifest = {
            "format": FORMAT,
            "app": {"name": name, "version": version, "file": f"app/{app_files[app.resolve()][0]}"},
            "graphflow_version": graphflow.__version__,
            "target": target, "python": spec_target.python, "platform": spec_target.platform,
            "jetson": spec_target.jetson,
            "models": models,
            "files": {},
        }
        for path, content in sorted(files.items()):
            data_hash, size = (hashlib.sha256(content).hexdigest(), len(content)) if isinstance(content, bytes) \
                else (sha256_file(content), content.stat().st_size)
            manifest["files"][path] = {"sha256": data_hash, "size": size}
        total = sum(entry["size"] for entry in manifest["files"].values())
        progress(f"writing {result} ({len(files)} files, {total / 1e6:.1f} MB)")
        try:  # a full disk, Ctrl-C: the temporary file goes, no half-written package is left to deploy
            with open_atomically(result) as out, tarfile.open(fileobj=out, mode="w") as tar:
                _add_bytes(tar, MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
                for path, content in sorted(files.items()):
                    if isinstance(content, bytes):
                        _add_bytes(tar, path, content)
                    else:
                        info = tar.gettarinfo(str(content), arcname=path)
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        info.mtime = 0
                        info.mode = 0o644
                        with open(content, "rb") as f:
                            tar.addfile(info, f)
        except OSError as exc:
            raise DeployError(f"cannot write {result}: {exc.strerror or exc}") from None
    _warn_of_a_relative_input(spec)
    return result


def _writable_target(out_dir: Path, file_name: str) -> Path:
    """``out_dir/file_name``, with ``out_dir`` made: refused in one line when it cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DeployError(f"-o {out_dir}: not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"-o {out_dir}: cannot make the folder: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DeployError(f"-o {out_dir}: the folder is not writable")
    result = out_dir / file_name
    if result.is_dir():
        raise DeployError(f"{result} is a folder: move it away, or write the package elsewhere with -o")
    return result


def _check_graphflow_wheel(wheel: Path) -> None:
    """--graphflow-wheel must be a graphflow wheel (else the package fails only on the device)."""
    if not wheel.is_file():
        raise DeployError(f"--graphflow-wheel {wheel}: no such file")
    if not (wheel.name.startswith("graphflow-") and wheel.name.endswith(".whl")):
        raise DeployError(f"--graphflow-wheel {wheel}: not a graphflow wheel (expected graphflow-VERSION-...whl)")
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            metadata = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
            text = archive.read(metadata).decode(errors="replace") if metadata else ""
    except (zipfile.BadZipFile, OSError) as exc:
        raise DeployError(f"--graphflow-wheel {wheel}: not a readable wheel ({exc})") from None
    if not re.search(r"^Name: graphflow\s*$", text, re.MULTILINE):
        raise DeployError(f"--graphflow-wheel {wheel}: not a graphflow wheel (its metadata names no graphflow)")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _collect_app_files(app: Path, read_json) -> dict[Path, tuple[str, dict]]:
    """The app file and every subgraph it includes (recursively), each under a unique flat name,
    with the subgraph references rewritten to those names."""
    found: dict[Path, tuple[str, dict]] = {}
    names: set[str] = set()

    def visit(path: Path) -> str:
        path = path.resolve()
        if path in found:
            return found[path][0]
        packaged = path.name
        stem = 1
        while packaged in names:
            stem += 1
            packaged = f"{stem}-{path.name}"
        names.add(packaged)
        data = read_json(path)
        found[path] = (packaged, data)
        for node in data.get("graph", {}).get("nodes", []):
            if "subgraph" in node:
                sub = path.parent / node["subgraph"]
                if not sub.exists():
                    sub = Path(node["subgraph"])
                node["subgraph"] = visit(sub)
        return packaged

    visit(app)
    return found


def _bare_model_names(app_files) -> None:
    """Point every model param at the bare file name: on the device the release's models/ folder
    (its model path) holds each model under that name."""
    for _, data in app_files.values():
        for components in data.get("config", {}).values():
            for params in components.values():
                for param, value in params.items():
                    if param.endswith(MODEL_PARAM_SUFFIX) and isinstance(value, str) and value:
                        params[param] = Path(value).name


def _local_packs(spec) -> list[Path]:
    """Packs given as a path relative to an app file (a folder, or a .py file): shipped beside
    the packaged app files (app/<its name>)."""
    found: dict[str, Path] = {}
    for name, base, file, path in spec.modules:
        if _is_local_pack(name):
            candidate = (Path(base) / name).resolve()
            if found.get(candidate.name, candidate) != candidate:
                raise DeployError(f"{file}: {path}: two node packs are both named {candidate.name!r}")
            found[candidate.name] = candidate
    return list(found.values())


def _is_local_pack(name: str) -> bool:
    return "/" in name or name.endswith(".py")


def _local_pack_paths(app_files) -> None:
    """Point path-given packs at their packaged place, beside the (flattened) app files."""
    for _, data in app_files.values():
        if "modules" in data:
            data["modules"] = [f"./{Path(name.rstrip('/')).name}" if _is_local_pack(name) else name
                               for name in data["modules"]]


def build_graphflow_wheel(out: Path, progress=print) -> Path:
    """graphflow as a pure-Python wheel (py3-none-any: the same wheel on x86_64 and aarch64),
    built with this interpreter's setuptools and wheel (no download: packaging works offline)."""
    if not (REPO_ROOT / "setup.py").exists():
        raise DeployError(f"graphflow is not a source checkout here ({REPO_ROOT}); pass --graphflow-wheel FILE")
    missing = _missing_build_tools()
    if missing:
        raise DeployError(f"building the graphflow wheel needs {' and '.join(missing)}: "
                          f"pip install 'setuptools>={SETUPTOOLS_MINIMUM}' wheel (or pip install -e '.[dev]')")
    progress("building the graphflow wheel")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gf-src-") as src:
        # Build from a copy of the tracked sources: the checkout's own build/ and compiled files stay out.
        _copy_tracked(REPO_ROOT, Path(src))
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                 "--quiet", "-w", str(out), src],
                                env=_env(SOURCE_DATE_EPOCH=_source_date()),
                                capture_output=True, text=True)
    if result.returncode != 0:
        said = [line for line in (result.stderr + result.stdout).strip().splitlines() if line.strip()]
        raise DeployError("building the graphflow wheel failed:\n  " + "\n  ".join(said[-12:]))
    wheels = sorted(out.glob("graphflow-*.whl"))
    if not wheels or not wheels[0].name.endswith("-py3-none-any.whl"):
        raise DeployError(f"the graphflow wheel is not pure Python: {[w.name for w in wheels]}")
    return wheels[0]


def _missing_build_tools() -> list[str]:
    """What of the build-system requirements (pyproject.toml) this interpreter lacks."""
    from importlib.metadata import PackageNotFoundError, version
    missing = []
    for name, minimum in (("setuptools", SETUPTOOLS_MINIMUM), ("wheel", 0)):
        try:
            major = int(version(name).split(".")[0])
        except (PackageNotFoundError, ValueError):
            major = -1
        if major < minimum:
            missing.append(f"{name}>={minimum}" if minimum else name)
    return missing


def _source_date() -> str:
    """The last commit's time: the wheel's file times, so the same sources make the same wheel
    (and a redeploy uploads it only when graphflow changed)."""
    stamp = subprocess.run(["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return stamp.stdout.strip() if stamp.returncode == 0 and stamp.stdout.strip().isdigit() else "315532800"


def _copy_tracked(root: Path, dest: Path) -> None:
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True)
    if listed.returncode != 0:
        raise DeployError(f"cannot list the sources of {root} (git ls-files failed)")
    for rel in filter(None, listed.stdout.decode().split("\0")):
        source = root / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)


def _env(**extra) -> dict:
    import os
    env = dict(os.environ)
    env.update(extra)
    return env


def _pip_target_args(target: Target, python: str | None = None) -> list[str]:
    platforms = [arg for tag in target.pip_platforms() for arg in ("--platform", tag)]
    return [*platforms, "--python-version", python or target.python,
            "--implementation", "cp", "--only-binary", ":all:"]


def download_wheelhouse(target: Target, requirements: list[str], out: Path, progress=print) -> Path:
    """Every wheel ``requirements`` need on ``target`` (pip download; needs PyPI)."""
    progress(f"downloading the {target.name} wheelhouse (Python {target.python}, {target.platform})")
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(out),
                             *_pip_target_args(target), *requirements], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DeployError(f"pip download for {target.name} failed: {last}")
    return out


def _pins_from_wheels(wheels: list[Path]) -> list[str]:
    pins = []
    for wheel in wheels:
        dist, version = wheel.name.split("-")[:2]
        pins.append(f"{dist.replace('_', '-').lower()}=={version}")
    return pins


# -- reading and checking --------------------------------------------------------------------------
def read_manifest(package: Path) -> dict:
    try:
        with tarfile.open(package, "r:") as tar:
            member = tar.extractfile(MANIFEST)
            manifest = json.loads(member.read())
    except FileNotFoundError:
        raise DeployError(f"{package}: no such package") from None
    except (tarfile.TarError, KeyError, AttributeError, json.JSONDecodeError, OSError) as exc:
        raise DeployError(f"{package}: not a graphflow package ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise DeployError(f"{package}: unknown package format {manifest.get('format') if isinstance(manifest, dict) else None!r}")
    problem = _manifest_problem(manifest)
    if problem:
        raise DeployError(f"{package}: damaged manifest ({MANIFEST}): {problem}")
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What in a manifest of the right format is not as a package writes it, or None."""
    files = manifest["files"]
    if not isinstance(files, dict):
        return f"files: expected an object of path -> {{sha256, size}}, got {type(files).__name__}"
    for path, entry in files.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("size"), int) and not isinstance(entry.get("size"), bool)):
            return f"files[{path!r}]: expected {{\"sha256\": text, \"size\": a whole number}}"
    for key in ("target", "python"):
        if not isinstance(manifest.get(key), str):
            return f"{key}: expected text, got {json.dumps(manifest.get(key))}"
    return None


def package_digest(package: Path) -> str:
    """The release id's hash: the manifest's sha256 (it hashes every file)."""
    with tarfile.open(package, "r:") as tar:
        return hashlib.sha256(tar.extractfile(MANIFEST).read()).hexdigest()


def verify_files(package: Path) -> list[str]:
    """Problems found: a file whose hash or size differs from the manifest, one missing, one not
    listed, or an unsafe path. Empty when the package is intact."""
    manifest = read_manifest(package)
    expected = dict(manifest["files"])
    problems = []
    with tarfile.open(package, "r:") as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            if not _safe_path(member.name) or not member.isfile():
                problems.append(f"{member.name}: unsafe entry (only plain files under relative paths)")
                continue
            want = expected.pop(member.name, None)
            if want is None:
                problems.append(f"{member.name}: not listed in the manifest")
                continue
            digest = hashlib.sha256()
            f = tar.extractfile(member)
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            if digest.hexdigest() != want["sha256"]:
                problems.append(f"{member.name}: sha256 {digest.hexdigest()[:12]}… differs from the "
                                f"manifest's {want['sha256'][:12]}…")
    problems += [f"{path}: listed in the manifest but missing" for path in expected]
    return problems


def _safe_path(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and not name.startswith("/")


def extract(package: Path, dest: Path) -> dict:
    """Extract a verified package into ``dest``; returns the manifest."""
    problems = verify_files(package)
    if problems:
        raise DeployError(f"{package}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    manifest = read_manifest(package)
    with tarfile.open(package, "r:") as tar:
        for member in tar:
            target = dest / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    return manifest


def check_package(package: Path, target: str | None = None, progress=print) -> list[str]:
    """Verify hashes, then resolve the wheelhouse offline for the target; returns the problems."""
    problems = verify_files(package)
    if problems:
        return problems
    manifest = read_manifest(package)
    target_name = target or manifest["target"]
    if target_name not in TARGETS:
        return [f"unknown target {target_name!r} (one of: {', '.join(TARGETS)})"]
    spec_target = TARGETS[target_name]
    if not any(path.startswith("wheelhouse/") for path in manifest["files"]):
        progress(f"{package.name}: hashes ok; no wheelhouse (the device installs the requirements from PyPI)")
        return []
    with tempfile.TemporaryDirectory(prefix="gfpkg-check-") as temp:
        temp = Path(temp)
        extract(package, temp / "pkg")
        wheels = sorted(str(p) for p in (temp / "pkg" / "wheels").glob("*.whl"))
        progress(f"{package.name}: hashes ok; resolving its wheelhouse offline for {target_name} "
                 f"(Python {manifest['python'] if target is None else spec_target.python}, {spec_target.platform})")
        python = manifest["python"] if target is None else spec_target.python
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
             "--find-links", str(temp / "pkg" / "wheelhouse"), *_pip_target_args(spec_target, python),
             "--target", str(temp / "target"), "-r", str(temp / "pkg" / "requirements.txt"), *wheels],
            capture_output=True, text=True, env=_env(PIP_CONSTRAINT="", PIP_FIND_LINKS="",
                                                     PIP_EXTRA_INDEX_URL="", PIP_CONFIG_FILE="/dev/null"))
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or \
                    result.stderr.strip().splitlines()[-1:]
            return [f"the wheelhouse does not resolve offline for {target_name}: {line}" for line in lines[:3]]
    return []
