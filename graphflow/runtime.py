"""Runtime: what a component and its channels need from whoever runs them. The scheduler is one;
this plain one serves the test harness: a settable clock, its own tap, no threads."""
from __future__ import annotations

import time

from .ports import InputChannel, QueueFull
from .tap import Tap


class Runtime:
    def __init__(self, clock=None, tap: Tap | None = None):
        self.clock = clock or time.monotonic
        self.tap = tap or Tap()

    def now(self) -> float:
        return self.clock()

    def input_ready(self, component) -> None:
        """A trigger input of ``component`` received a message."""

    def blocked(self, rx: InputChannel) -> bool:
        """A publish waits for room in the full ``block`` input ``rx``: make room, or say whether
        to wait (True) or give up (False); raise :class:`QueueFull` when the wait could never end."""
        raise QueueFull(f"input {rx.name} is full ({rx.queue_size}) with policy 'block' "
                        f"and nothing else runs here to make room")

    def room_made(self, rx: InputChannel) -> None:
        """A read made room in ``rx``, which someone waits on."""
