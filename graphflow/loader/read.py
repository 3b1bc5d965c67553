"""Stage 1: the files. The app file, every subgraph file it reaches, and the ``--config``
overlays, parsed as JSON; nothing else in loading touches the file system."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import AppError, AppInvalid


@dataclass
class Sources:
    """Parsed documents: the app, its subgraphs by the path each is referenced from, overlays."""
    app: Path
    documents: dict[Path, Any] = field(default_factory=dict)  # resolved path -> parsed JSON
    names: dict[Path, Path] = field(default_factory=dict)  # resolved path -> the path as first referenced
    subgraphs: dict[tuple[Path, str], Path] = field(default_factory=dict)  # (including file, reference) -> resolved path
    overlays: list[tuple[Path, Any]] = field(default_factory=list)
    errors: list[AppError] = field(default_factory=list)


def read_json(path: Path, what: str = "app file") -> Any:
    """Parse JSON, or raise AppInvalid naming the line and column of the syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AppInvalid([AppError(str(path), "$", f"{what} not found")]) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ENAMETOOLONG, a folder, bad bytes
        raise AppInvalid([AppError(str(path), "$", f"cannot read {what}: {_reason(exc)}")]) from None
    try:
        return json.loads(text, object_pairs_hook=_without_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise AppInvalid([AppError(f"{path}:{exc.lineno}:{exc.colno}", "$",
                                   f"invalid JSON: {exc.msg}")]) from None
    except _DuplicateKey as exc:
        raise AppInvalid([AppError(str(path), "$", str(exc))]) from None
    except RecursionError:
        raise AppInvalid([AppError(str(path), "$", "JSON nested too deeply")]) from None


class _DuplicateKey(ValueError):
    pass


def _without_duplicate_keys(pairs: list) -> dict:
    """A JSON object; a key given twice is refused (JSON would keep the last one in silence:
    a param set twice in a config, the first setting lost)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _DuplicateKey(f"key {twice!r} appears twice in one object (only the last would count): keep one")
    return found


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def read_sources(app: Path, overlays: list[Path]) -> Sources:
    """Read the app file, the subgraph files it references (recursively), and the overlays."""
    sources = Sources(app)
    try:
        sources.documents[_resolve(app)] = read_json(app)
        sources.names[_resolve(app)] = app
    except AppInvalid as exc:
        sources.errors += exc.errors
        return sources
    _read_subgraphs(sources, app, [_resolve(app)])
    for overlay in overlays:
        try:
            sources.overlays.append((overlay, read_json(overlay, "config file")))
        except AppInvalid as exc:
            sources.errors += exc.errors
    return sources


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _read_subgraphs(sources: Sources, file: Path, stack: list[Path]) -> None:
    data = sources.documents[stack[-1]]
    nodes = data.get("graph", {}).get("nodes", []) if isinstance(data, dict) and isinstance(data.get("graph"), dict) else []
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        reference = node.get("subgraph") if isinstance(node, dict) else None
        if not isinstance(reference, str) or not reference:
            continue  # the schema check reports it
        where = f"$.graph.nodes[{i}].subgraph"
        path = file.parent / reference
        try:
            if not path.exists() and Path(reference).exists():
                path = Path(reference)  # also accept paths relative to the working directory
            found = path.is_file()
        except (OSError, ValueError) as exc:
            sources.errors.append(AppError(str(file), where, f"subgraph file {reference[:200]!r}: {_reason(exc)}"))
            continue
        if not found:
            sources.errors.append(AppError(str(file), where, f"subgraph file {reference[:200]!r} not found "
                                                             f"(looked in {file.parent} and the working directory)"))
            continue
        resolved = _resolve(path)
        if resolved in stack:
            sources.errors.append(AppError(str(file), where, f"subgraph {reference!r} includes itself"))
            continue
        sources.subgraphs[(stack[-1], reference)] = resolved
        if resolved in sources.documents:
            continue
        try:
            sources.documents[resolved] = read_json(path, "subgraph file")
            sources.names[resolved] = path
        except AppInvalid as exc:
            sources.errors += exc.errors
            continue
        _read_subgraphs(sources, path, stack + [resolved])
