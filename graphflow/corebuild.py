"""Which core runs: the compiled one only while it was built from the sources beside it.

setup.py compiles the framework's hot path with mypyc and writes, next to the compiled files,
the SHA-256 of each source it compiled (``COMPILED_FROM``). A compiled module shadows its ``.py``
file, so after an edit, a ``git checkout`` or a pull the compiled core would silently run old
code. When any source differs from what was compiled, graphflow imports all of the core from
its sources instead (all or none: compiled and interpreted core classes do not mix) and warns
once. Rebuilding (``pip install -e .``) brings the compiled core back.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import sys
import warnings
from pathlib import Path

CORE_MODULES = ("envelope", "ledger", "policies", "ports", "runtime", "scheduler")  # setup.py compiles these (it reads this list)
COMPILED_FROM = "_compiled_from.json"  # {source file name: sha256}, written by setup.py
PACKAGE_DIR = Path(__file__).resolve().parent


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_files(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    return [package_dir / (name + suffix) for name in CORE_MODULES
            for suffix in importlib.machinery.EXTENSION_SUFFIXES if (package_dir / (name + suffix)).exists()]


def stale_sources(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The core sources that differ from what the compiled files were built from (every one of
    them when the build left no record). Empty when nothing is compiled or all is current."""
    if not compiled_files(package_dir):
        return []
    try:
        built = json.loads((package_dir / COMPILED_FROM).read_text())
    except (OSError, ValueError):
        built = {}
    sources = [package_dir / f"{name}.py" for name in CORE_MODULES]
    return [source.name for source in sources
            if source.exists() and built.get(source.name) != source_digest(source)]


class _CoreFromSources:
    """Import finder that loads the core modules from their ``.py`` files."""

    def __init__(self, package_dir: Path):
        self.sources = {f"{__package__}.{name}": package_dir / f"{name}.py" for name in CORE_MODULES}

    def find_spec(self, fullname, path=None, target=None):
        source = self.sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def use_current_core() -> None:
    """Before the core is imported: run it from its sources if the compiled build is stale."""
    stale = stale_sources()
    if not stale:
        return
    sys.meta_path.insert(0, _CoreFromSources(PACKAGE_DIR))
    warnings.warn(f"graphflow's compiled core does not match its sources ({', '.join(stale)} changed since it "
                  f"was built, in {PACKAGE_DIR}); the core runs interpreted until it is rebuilt: pip install -e .",
                  RuntimeWarning, stacklevel=2)
