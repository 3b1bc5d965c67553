"""The web viewer: inspect a running graph live in a browser, like Isaac's Sight.

``graphflow run APP`` serves it at http://127.0.0.1:3000 (``--viewer-port``, ``--viewer-host``,
``--no-viewer``). The page shows the graph with live rates, a channel tree, image windows with
skeleton overlays synchronized by acqtime, an inspector, plots and live params; see
:mod:`graphflow.viewer.server` for the JSON API and the stream.
"""
from .observer import ViewerObserver
from .server import ViewerError, ViewerServer
from .session import ViewerSession, view_recording

__all__ = ["ViewerError", "ViewerObserver", "ViewerServer", "ViewerSession", "view_recording"]
