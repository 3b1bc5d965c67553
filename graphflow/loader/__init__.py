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

from pathlib import Path

from ..registry import Registry
from .compose import compose
from .read import read_json, read_sources
from .spec import COMMAND_LINE, AppError, AppInvalid, AppSpec, ComponentSpec, EdgeSpec, SCHEMA_DIR, build_spec
from .validate import validate

__all__ = ["AppError", "AppInvalid", "AppSpec", "COMMAND_LINE", "ComponentSpec", "EdgeSpec", "SCHEMA_DIR",
           "load_app", "read_json"]


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
