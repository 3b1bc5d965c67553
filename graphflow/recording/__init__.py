"""Recordings in MCAP: record a running app's channels, replay them into an app, view and export them.

- :mod:`.writer`: the recorder, an observer of the tap writing on its own thread;
- :mod:`.reader`: the index, messages in log-time order, recovery of a file cut short;
- :mod:`.replay`: a source feeding recorded channels into an app in place of its sources;
- :mod:`.foxglove`: images and skeletons in Foxglove's well-known schemas (files and ``--foxglove``);
- :mod:`.cli`: ``run --record``, ``replay``, ``view``, ``info``, ``export``.
"""
from __future__ import annotations

import importlib

from .errors import RecordingError, RecordingInvalid

_EXPORTS = {"Recorder": "writer", "Recording": "reader"}
__all__ = ["Recorder", "Recording", "RecordingError", "RecordingInvalid"]


def __getattr__(name: str):
    # Imported on first use: `graphflow run` without --record never loads mcap.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
