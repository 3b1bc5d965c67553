"""The web viewer: inspect a running graph live in a browser, like Isaac's Sight.

``graphflow run APP`` serves it at http://127.0.0.1:3000 (``--viewer-port``, ``--viewer-host``,
``--viewer-insecure``, ``--no-viewer``). The page shows the graph with live rates, a channel tree,
image windows with skeleton overlays synchronized by acqtime, an inspector, plots and live
params. :mod:`~graphflow.viewer.api` answers the JSON routes, :mod:`~graphflow.viewer.stream`
feeds the WebSocket clients, :mod:`~graphflow.viewer.http` serves both (aiohttp).
"""
from __future__ import annotations

import importlib

_EXPORTS = {"ViewerError": "http", "ViewerServer": "http", "ViewerObserver": "observer",
            "ViewerSession": "session"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use, so `graphflow run --no-viewer` (and the CLI's flags) never load aiohttp.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
