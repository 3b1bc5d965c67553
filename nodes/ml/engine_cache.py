"""The TensorRT engine cache: one engine per (model content, TensorRT version, GPU, L4T release,
precision, optimization profile), shared by every app and release on the device.

An engine is only valid for the exact TensorRT build and GPU that made it, so each engine file
has a key file beside it (``<engine>.key.json``) naming what it was built from; an engine
whose key file is missing or differs is not loaded, whether it sits in the cache or at a path
the app gave (``engine_file_path``): it is rebuilt there. A cache that cannot be written (a
read-only folder, a full disk) costs a rebuild at the next start, not this run: the engine then
runs from memory with a warning. On a deployed device the cache is DIR/cache/graphflow/engines
(graphflow deploy sets XDG_CACHE_HOME=DIR/cache).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from graphflow.files import write_atomically

from graphflow.models import user_cache_dir

log = logging.getLogger("graphflow.ml.tensorrt")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def l4t_release(path: Path = TEGRA_RELEASE) -> str:
    """The Jetson's L4T release, e.g. 'R36.4.0' from '# R36 (release), REVISION: 4.0, ...';
    '' off a Jetson."""
    try:
        first = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    major = first.split("(", 1)[0].strip(" #")
    revision = first.split("REVISION:", 1)[1].split(",", 1)[0].strip() if "REVISION:" in first else ""
    return f"{major}.{revision}" if revision else major


def engine_key(model_sha256: str, tensorrt_version: str, gpu: str, precision: str, profile: dict,
               l4t: str | None = None) -> dict:
    """Everything an engine depends on."""
    return {"model": model_sha256, "tensorrt": tensorrt_version, "gpu": gpu,
            "l4t": l4t_release() if l4t is None else l4t, "precision": precision, "profile": profile}


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cached_engine_path(model: Path, key: dict) -> Path:
    return user_cache_dir() / "engines" / f"{model.stem}-{key['precision']}-{key_digest(key)}.engine"


def key_file(engine: Path) -> Path:
    return engine.with_name(engine.name + ".key.json")


def read_engine(engine: Path, key: dict) -> bytes | None:
    """The engine's bytes when it exists and was built from ``key``; None (with a warning saying
    why, for an engine that exists) otherwise."""
    if not engine.is_file():
        return None
    try:
        recorded = json.loads(key_file(engine).read_text())
    except (OSError, ValueError):
        log.warning("TensorRT engine %s has no readable key file (%s): not loading it, it may be for "
                    "another model, precision or TensorRT; building a new one", engine, key_file(engine).name)
        return None
    if recorded != key:
        differs = sorted(k for k in set(key) | set(recorded) if key.get(k) != recorded.get(k))
        log.warning("TensorRT engine %s was built for another %s: not loading it; building a new one",
                    engine, ", ".join(differs))
        return None
    return engine.read_bytes()


def write_engine(engine: Path, data: bytes, key: dict) -> bool:
    """Store an engine and its key file; False (with a warning) when the cache cannot be written."""
    try:
        write_atomically(engine, data)
        write_atomically(key_file(engine), (json.dumps(key, indent=1, sort_keys=True) + "\n").encode())
    except OSError as exc:
        log.warning("cannot write the TensorRT engine to %s (%s): running it from memory; the next start "
                    "builds it again", engine, exc)
        return False
    return True
