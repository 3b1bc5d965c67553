"""Wheels with real metadata for pip's resolver, for platforms this machine is not (pip's dry run
reads only a wheel's metadata and tags)."""
from __future__ import annotations

import zipfile
from pathlib import Path


def fake_target_wheel(folder: Path, name: str, version: str, tag: str, requires: list[str] = ()) -> Path:
    """A wheel with real metadata for pip's resolver (which reads only the metadata on --dry-run)."""
    path = folder / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                       + "".join(f"Requires-Dist: {r}\n" for r in requires))
        wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path
