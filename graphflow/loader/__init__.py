"""Loading an app, as stages that each take the previous one's result and change nothing behind
it: read (files → JSON documents, each value's file and JSON path known) → compose (subgraphs
expanded with their names prefixed ``<node>.``, interface channels forwarded, ``--config`` then
``--set`` over the app's config; later wins) → validate (JSON Schema, the graph against the node
declarations, param types and ranges; returns the problems found) → an immutable
:class:`AppSpec`.

Every problem is one :class:`AppError` line: file, JSON path, what was expected, and the nearest
names when something looks misspelt. All problems are reported at once.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..registry import Registry
from .compose import compose
from .read import read_json, read_sources
from .spec import COMMAND_LINE, AppError, AppInvalid, AppSpec, ComponentSpec, EdgeSpec, SCHEMA_DIR, build_spec
from .validate import validate

__all__ = ["AppError", "AppInvalid", "AppSpec", "COMMAND_LINE", "ComponentSpec", "EdgeSpec", "SCHEMA_DIR",
           "load_app", "load_app_data", "read_json"]


def load_app(path: str | Path, overlays=(), sets=(), registry: Registry | None = None,
             io: dict[str, str] | None = None) -> AppSpec:
    """Read, compose and validate an app; raises :class:`AppInvalid` listing every problem.

    ``io`` gives values for the params that the app's ``io`` section names (``--input``,
    ``--output``); they apply after ``--config`` and before ``sets``."""
    try:
        sources = read_sources(Path(path), [Path(p) for p in overlays])
        composition = compose(sources, list(sets), io or {})
        if composition.fatal:
            raise AppInvalid(composition.errors)
        registry = registry or Registry()
        errors = composition.errors + validate(composition, registry)
        if errors:
            raise AppInvalid(errors)
        return build_spec(composition, registry)
    except RecursionError:  # JSON nested deeper than the checks can follow, or a graph too deep to walk
        raise AppInvalid([AppError(str(path), "$", "nested too deeply (or a graph too deep) to check")]) from None


def load_app_data(data: dict, file_name: str = "app.app.json") -> AppSpec:
    """An app from the composed JSON that a recording or a running app hands on. Its
    ``module_dirs`` (pack name → the folder it was named from) finds packs kept beside the
    original app file; a pack not there is looked for as usual, and reported missing as usual."""
    registry = Registry()
    for name, folder in (data.get("module_dirs") or {}).items():
        if Path(folder).is_dir():
            try:
                registry.load_pack(name, Path(folder))
            except Exception:  # not loadable from there: the loader tries the usual places and says why
                pass
    with tempfile.TemporaryDirectory(prefix="graphflow-app-") as folder:
        path = Path(folder) / file_name
        path.write_text(json.dumps({key: value for key, value in data.items() if key != "module_dirs"}))
        return load_app(path, registry=registry)
