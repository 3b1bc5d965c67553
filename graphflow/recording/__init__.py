"""Recordings in MCAP: record a running app's channels, replay them into an app, view and export them.

- :mod:`.writer`: the recorder, an observer of the tap writing on its own thread;
- :mod:`.reader`: the index, messages in log-time order, recovery of a file cut short;
- :mod:`.replay`: a source feeding recorded channels into an app in place of its sources;
- :mod:`.foxglove`: images and skeletons in Foxglove's well-known schemas (files and ``--foxglove``);
- :mod:`.cli`: ``run --record``, ``replay``, ``view``, ``info``, ``export``.
"""
from .reader import Recording, RecordingInvalid
from .writer import Recorder, RecordingError

__all__ = ["Recorder", "Recording", "RecordingError", "RecordingInvalid"]
