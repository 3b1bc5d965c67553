"""Finding node types. A node pack is a Python package (or module) of Codelet subclasses; its
node types are named ``pack.ClassName``. Packs are found, in this order, as:

1. a ``graphflow.nodes`` entry point of that name (third-party packs),
2. a pack that ships with graphflow (``graphflow.packs.<pack>``: the repo's ``nodes/`` folder),
3. a path relative to the app file (a folder with ``__init__.py``, or a ``.py`` file),
4. any importable module name.

The framework imports no pack by itself; it loads what an app names, or everything for
``graphflow nodes``. A pack that fails to import leaves nothing behind, so loading it again (after
a fix, in the same process) imports it afresh.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .codelet import Codelet

ENTRY_POINT_GROUP = "graphflow.nodes"
IN_REPO_PACKAGE = "graphflow.packs"


class PackNotFound(LookupError):
    pass


class Registry:
    def __init__(self):
        self.types: dict[str, type[Codelet]] = {}
        self.packs: dict[str, ModuleType] = {}

    # -- loading ------------------------------------------------------------------------------
    def load_pack(self, name: str, base_dir: Path | None = None) -> ModuleType:
        """Load the pack ``name`` (see the module doc for where it is looked for)."""
        pack_name = Path(name).stem if name.endswith(".py") or "/" in name else name
        if pack_name in self.packs:
            return self.packs[pack_name]
        before = set(sys.modules)
        try:
            module = self._import_pack(name, base_dir)
            submodules = list(_walk(module))
        except BaseException:
            for loaded in set(sys.modules) - before:  # a half-imported pack would be found again
                del sys.modules[loaded]
            importlib.invalidate_caches()
            raise
        for submodule in submodules:
            for cls in vars(submodule).values():
                if (inspect.isclass(cls) and issubclass(cls, Codelet) and cls is not Codelet
                        and cls.__module__ == submodule.__name__ and not cls.__name__.startswith("_")):
                    self.types[f"{pack_name}.{cls.__name__}"] = cls
        self.packs[pack_name] = module
        return module

    def load_all(self) -> list[str]:
        """Load every pack that can be found without an app; returns load errors as text."""
        problems = []
        for name in known_packs():
            try:
                self.load_pack(name)
            except Exception as exc:  # one broken pack must not hide the others
                problems.append(f"node pack {name!r}: {exc}")
        return problems

    def _import_pack(self, name: str, base_dir: Path | None) -> ModuleType:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                return ep.load()
        if "/" not in name and not name.endswith(".py"):
            try:
                return importlib.import_module(f"{IN_REPO_PACKAGE}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name not in (IN_REPO_PACKAGE, f"{IN_REPO_PACKAGE}.{name}"):
                    raise
        if base_dir is not None:
            candidate = (base_dir / name).resolve()
            if candidate.is_dir() and (candidate / "__init__.py").exists():
                candidate = candidate / "__init__.py"
            if candidate.is_file():
                if candidate.suffix != ".py":  # (Python would not find a loader for it)
                    raise PackNotFound(f"node pack {name!r}: {candidate} is not a Python file (a pack is a .py "
                                       f"file or a folder with __init__.py)")
                return _import_file(candidate)
        if "/" in name or name.endswith(".py"):  # a path, which no module name can be
            where = (base_dir / name).resolve() if base_dir is not None else Path(name)
            raise PackNotFound(f"node pack {name!r} not found: no folder with __init__.py, nor a .py file, "
                               f"at {where}")
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name.split(".")[0] and exc.name != name:
                raise
        where = [f"entry point group '{ENTRY_POINT_GROUP}'", f"'{IN_REPO_PACKAGE}.{name}'"]
        if base_dir is not None:
            where.append(f"path '{base_dir / name}'")
        where.append(f"module '{name}'")
        raise PackNotFound(f"node pack {name!r} not found (looked in {', '.join(where)})")

    # -- queries ------------------------------------------------------------------------------
    def get(self, type_name: str) -> type[Codelet] | None:
        return self.types.get(type_name)

    def describe_all(self) -> list[dict]:
        return [cls.describe(name) for name, cls in sorted(self.types.items())]


def load_error(name: str, error: Exception) -> str:
    """One line for a pack that did not load: not found (where it looked), or what its import
    raised and where in the pack's own code (a SyntaxError names its file and line itself)."""
    if isinstance(error, PackNotFound):
        return str(error)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith("<frozen") and Path(frame.filename).parent != Path(__file__).parent]
    at = "" if isinstance(error, SyntaxError) or not frames else f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return f"node pack {name!r} failed to import: {type(error).__name__}: {error}{at}"


def known_packs() -> list[str]:
    """The packs found without an app: entry points, then those that ship with graphflow."""
    names = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    try:
        repo = importlib.import_module(IN_REPO_PACKAGE)
        names += [m.name for m in pkgutil.iter_modules(repo.__path__) if not m.name.startswith("_")]
    except ImportError:
        pass
    return list(dict.fromkeys(names))


def _walk(module: ModuleType):
    yield module
    if hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                yield from _walk(importlib.import_module(f"{module.__name__}.{info.name}"))


def _import_file(path: Path) -> ModuleType:
    is_package = path.name == "__init__.py"
    module_name = f"graphflow_pack_{(path.parent if is_package else path).stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) == str(path):
            return loaded
        # A pack of the same name from another folder (another app, in this process): not that one.
        for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(path.parent)] if is_package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it: the pack's relative imports need it
    spec.loader.exec_module(module)
    return module
