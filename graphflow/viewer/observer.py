"""The viewer's tap observer. It runs on the graph's threads, so it does as little as
possible: for a channel some viewer window watches it appends a *reference* to the message to
a short per-channel history (a ``deque`` with ``maxlen``: atomic, drops the oldest); for any
other channel it does one dict lookup. No copies, no encoding — messages are immutable once
published (their arrays are read-only), and the viewer's own thread encodes them later.

While nothing is watched the observer is not even subscribed to the tap.
"""
from __future__ import annotations

from collections import deque

IMAGE_HISTORY = 32   # images kept per watched image channel (to sync overlays by acqtime)
OTHER_HISTORY = 64   # other messages kept per watched channel (plots, overlays)


class ViewerObserver:
    def __init__(self, tap=None):
        self._tap = tap
        self._history: dict[str, deque] = {}
        self._subscribed = False
        self.version = 0  # changes when a watched channel publishes (the pump skips rounds it did not)

    # -- tap interface: called on graph threads, must return at once -----------------------
    def published(self, channel, message) -> None:
        history = self._history.get(channel.name)
        if history is not None:
            history.append(message)
            self.version += 1  # not atomic: two threads may count once, the pump only looks for a change

    # -- viewer side --------------------------------------------------------------------------
    def watch(self, depths: dict[str, int]) -> None:
        """Watch exactly these channels (name → history length); keeps what is already held."""
        histories = {}
        for name, depth in depths.items():
            old = self._history.get(name)
            histories[name] = old if old is not None and old.maxlen == depth else deque(old or (), maxlen=depth)
        self._history = histories  # one atomic swap; the graph threads see old or new, both fine
        if self._tap is not None:
            if histories and not self._subscribed:
                self._tap.subscribe(self)
                self._subscribed = True
            elif not histories and self._subscribed:
                self._tap.unsubscribe(self)
                self._subscribed = False

    @property
    def watched(self) -> frozenset:
        return frozenset(self._history)

    def history(self, name: str) -> tuple:
        """The held messages of a channel, oldest first (a snapshot)."""
        history = self._history.get(name)
        if not history:
            return ()
        for _ in range(3):
            try:
                return tuple(history)
            except RuntimeError:  # appended to while copying
                continue
        return (history[-1],)

    def close(self) -> None:
        self.watch({})
