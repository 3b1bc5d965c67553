"""The tap: the one observation point of a running graph.

Every publish, every receive and every tick passes through it. Observers (the job statistics'
readers, the web viewer, the recorder, cross-process bridges, the test harness) subscribe to it
and are called for the events they define; each must return at once — one that falls behind
drops data for itself only, it never slows the graph. An event nobody listens to costs a loop
over an empty tuple.

The job report's counters are not observers: counts, publish times, receive latencies and tick
durations are kept by the channels and the scheduler themselves (a counter or a ring-buffer
write each, the cheapest place), and :mod:`graphflow.stats` reads them.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol


class Observer(Protocol):
    """What an observer may define; it is called only for the events it defines.

    ``channel`` is the publishing output channel, ``rx`` the receiving input channel,
    ``component`` the codelet that ticked (times in seconds on the app clock)."""
    def published(self, channel: Any, message: Any) -> None: ...
    def received(self, rx: Any, message: Any, latency: float) -> None: ...
    def ticked(self, component: Any, start: float, duration: float) -> None: ...


class Tap:
    """Per event, a tuple of the subscribed observers' handlers. The tuples are replaced, never
    mutated, so graph threads iterate them without a lock."""

    def __init__(self):
        self.on_published: tuple = ()
        self.on_received: tuple = ()
        self.on_ticked: tuple = ()
        self._observers: tuple = ()
        self._lock = threading.Lock()

    @property
    def observers(self) -> tuple:
        return self._observers

    def subscribe(self, observer) -> None:
        with self._lock:
            self._set(self._observers + (observer,))

    def unsubscribe(self, observer) -> None:
        with self._lock:
            self._set(tuple(o for o in self._observers if o is not observer))

    def _set(self, observers: tuple) -> None:
        self._observers = observers
        self.on_published = tuple(o.published for o in observers if hasattr(o, "published"))
        self.on_received = tuple(o.received for o in observers if hasattr(o, "received"))
        self.on_ticked = tuple(o.ticked for o in observers if hasattr(o, "ticked"))
