"""What each deploy target runs: Python version, wheel platform, venv kind, pinned requirements.

JetPack 6 is Ubuntu 22.04 (glibc 2.35) with Python 3.10; JetPack 7 is Ubuntu 24.04 (glibc 2.39)
with Python 3.12. TensorRT's Python bindings come from JetPack's apt packages
(``python3-libnvinfer``), never from PyPI, so a Jetson venv sees the system site packages. ONNX
Runtime from PyPI is CPU-only on aarch64: it is the fallback when TensorRT cannot run.

The pins below are the versions that have wheels for the target's platform and Python (checked
with ``pip download --only-binary :all:``); ``linux-x86_64``/``linux-aarch64`` pin what this
machine runs. With ``--wheelhouse``, the package's requirements.txt pins the whole resolved set.
"""
from __future__ import annotations

import platform
import re
import sys
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

DEFAULT_EXTRAS = ("cpu", "jit")  # ONNX Runtime and OpenCV (the CPU path, the GPU path's fallback); numba (the decoder)


def _name(requirement: str) -> str:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


def _wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


def wheel_extras(wheel: Path) -> set[str]:
    """The extras the wheel declares (Provides-Extra)."""
    return {line.partition(":")[2].strip() for line in _wheel_metadata(wheel).splitlines()
            if line.startswith("Provides-Extra:")}


def wheel_requirements(wheel: Path, extras) -> list[str]:
    """graphflow's requirements as its wheel declares them (Requires-Dist): the unconditional ones
    and those of ``extras``; other markers (python_version...) stay for pip to evaluate."""
    text = _wheel_metadata(wheel)
    found = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement, _, marker = line[len("Requires-Dist:"):].strip().partition(";")
        wanted = re.findall(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if wanted and not set(wanted) & set(extras):
            continue
        # What is left of the marker once the extra is chosen (python_version...) stays for pip.
        rest = re.sub(r"\s*(and\s+)?extra\s*==\s*[\"'][^\"']+[\"']\s*(and\s+)?", " ", marker).strip()
        found.append(requirement.strip() + (f"; {rest}" if rest else ""))
    return found


@dataclass(frozen=True)
class Target:
    name: str
    python: str                 # "3.10"
    platform: str               # the newest manylinux tag the device's glibc runs, e.g. manylinux_2_35_aarch64
    jetson: bool                # a venv with --system-site-packages (TensorRT from JetPack)
    pins: dict = field(default_factory=dict)  # requirement name -> version; empty: this machine's versions
    gpu: tuple = ()             # extra requirement names on this target (pyproject extra of the same name)

    def pip_platforms(self) -> list[str]:
        """Every manylinux tag the device runs, newest first: pip's --platform takes each one
        literally (it widens only the legacy manylinux2014/2010 names)."""
        glibc, arch = self.platform[len("manylinux_2_"):].split("_", 1)
        return [f"manylinux_2_{minor}_{arch}" for minor in range(int(glibc), 16, -1)] + [f"manylinux2014_{arch}"]

    def requirements(self, declared: list[str]) -> list[str]:
        """``declared`` (graphflow's Requires-Dist for this target's extras) pinned: to the
        target's table, or for this machine's targets to what runs here; a requirement neither
        knows keeps its range (a --wheelhouse package pins the whole resolved set)."""
        pinned = []
        for requirement in declared:
            name = _name(requirement)
            if name in self.pins:
                pinned.append(f"{name}=={self.pins[name]}")
            elif not self.pins and ";" not in requirement and _installed(name):
                pinned.append(f"{name}=={metadata.version(name)}")
            else:
                pinned.append(requirement)
        return pinned

    @property
    def extras(self) -> tuple:
        """graphflow's extras installed on this target: the CPU path, and the target's own
        (pyproject.toml has an extra named after each Jetson target)."""
        return DEFAULT_EXTRAS + ((self.name,) if self.gpu else ())


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


_JP6 = {"numpy": "1.26.4", "jsonschema": "4.23.0", "msgpack": "1.1.0", "pyzmq": "26.2.0", "mcap": "1.2.2",
        "zstandard": "0.23.0", "lz4": "4.3.3", "zlib-ng": "1.0.0", "aiohttp": "3.10.10", "onnxruntime": "1.20.1",
        "opencv-python-headless": "4.10.0.84", "numba": "0.60.0", "cupy-cuda12x": "13.6.0"}
_JP7 = {"numpy": "2.2.6", "jsonschema": "4.23.0", "msgpack": "1.1.0", "pyzmq": "26.2.0", "mcap": "1.2.2",
        "zstandard": "0.23.0", "lz4": "4.4.4", "zlib-ng": "1.0.0", "aiohttp": "3.11.18", "onnxruntime": "1.22.1",
        "opencv-python-headless": "4.11.0.86", "numba": "0.61.2", "cupy-cuda13x": "14.2.0"}
_LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

TARGETS = {
    "jetson-jp6": Target("jetson-jp6", "3.10", "manylinux_2_35_aarch64", True, _JP6, ("cupy-cuda12x",)),
    "jetson-jp7": Target("jetson-jp7", "3.12", "manylinux_2_39_aarch64", True, _JP7, ("cupy-cuda13x",)),
    "linux-x86_64": Target("linux-x86_64", _LOCAL_PYTHON, "manylinux_2_28_x86_64", False),
    "linux-aarch64": Target("linux-aarch64", _LOCAL_PYTHON, "manylinux_2_28_aarch64", False),
}


def default_target() -> str:
    return "linux-aarch64" if platform.machine() in ("aarch64", "arm64") else "linux-x86_64"
