"""The ledger: the one observation point of a running graph.

Every publish, every receive and every tick passes through it. Observers (the web viewer,
the test harness, recorders, bridges) subscribe to it and are called for the events they
define; each must return at once — one that falls behind drops data for itself only, it never
slows the graph. An event nobody listens to costs a loop over an empty tuple.

The job statistics are not an observer: counts, publish times, receive latencies and tick
durations are kept by the channels and the scheduler themselves (a counter or a ring-buffer
write each, measured as the cheapest place), and :class:`Stats` reads them into the job report.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from .codelet import Codelet
    from .messages import Message
    from .ports import InputChannel, OutputChannel


class Observer(Protocol):
    """What an observer may define; it is called only for the events it defines."""
    def published(self, channel: "OutputChannel", message: "Message") -> None: ...
    def received(self, rx: "InputChannel", message: "Message", latency: float) -> None: ...
    def ticked(self, component: "Codelet", start: float, duration: float) -> None: ...


class Ledger:
    """Per event, a tuple of the subscribed observers' handlers. The tuples are replaced, never
    mutated, so graph threads iterate them without a lock; an empty one is the whole cost of an
    event nobody listens to."""

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


class Samples:
    """The last ``capacity`` float samples (a ring buffer) plus exact count and max.

    A Python list, not a numpy array: ``add`` runs on every tick and receive, and a list store
    is about three times cheaper than a numpy scalar store."""

    __slots__ = ("_data", "_capacity", "count", "max")

    def __init__(self, capacity: int = 4096):
        self._data = [0.0] * capacity
        self._capacity = capacity
        self.count = 0
        self.max = float("-inf")

    def add(self, value: float) -> None:
        self._data[self.count % self._capacity] = value
        self.count += 1
        if value > self.max:
            self.max = value

    def values(self) -> np.ndarray:
        return np.array(self._data[: min(self.count, self._capacity)], dtype=np.float64)

    def summary(self, scale: float = 1.0) -> dict:
        values = self.values()
        if not len(values):
            return {"median": None, "p90": None, "max": None}
        median, p90 = np.percentile(values, [50, 90])
        return {"median": median * scale, "p90": p90 * scale, "max": self.max * scale}


class Stats:
    """The job report's figures: per component ticks, tick durations and errors (kept here, written
    by the scheduler), and per channel messages, rate, drops and acquisition-to-receive latency
    (kept by the channels)."""

    def __init__(self, clock):
        self._clock = clock
        self.started = clock()
        self.ticks: dict[str, Samples] = {}
        self.errors: dict[str, int] = {}
        self._channels: dict[str, "OutputChannel"] = {}

    def track(self, components) -> None:
        for component in components:
            self.ticks.setdefault(component.full_name, Samples())
            for tx in component.outputs.values():
                self._channels[tx.name] = tx

    def error(self, component) -> None:
        self.errors[component.full_name] = self.errors.get(component.full_name, 0) + 1

    # report ----------------------------------------------------------------------------------
    def report(self) -> dict:
        """The job report: times in milliseconds, rates in messages per second."""
        now = self._clock()
        elapsed = max(now - self.started, 1e-9)
        components = {}
        for name, samples in sorted(self.ticks.items()):
            summary = samples.summary(scale=1e3)
            components[name] = {"ticks": samples.count, "tick_ms": summary,
                                "tick_rate": samples.count / elapsed,
                                "errors": self.errors.get(name, 0)}
        channels = {}
        for name, tx in sorted(self._channels.items()):
            count = tx.published
            span = tx.last_time - tx.first_time if count else 0.0
            rate = (count - 1) / span if count > 1 and span > 0 else (count / elapsed)
            receivers: dict[str, dict] = {}
            for rx in tx.receivers:
                latency = rx.latency.summary(scale=1e3)
                receivers[rx.name] = {"received": rx.received, "dropped": rx.dropped,
                                      "latency_ms": {"median": latency["median"], "p90": latency["p90"]}}
            channels[name] = {"message": tx.message_type.wire_name, "messages": count,
                              "rate": rate, "drops": sum(r["dropped"] for r in receivers.values()),
                              "receivers": receivers}
        return {"elapsed_s": elapsed, "components": components, "channels": channels}


def format_report(report: dict) -> str:
    """The job report as a plain-text table."""
    def ms(value):
        return "-" if value is None else f"{value:.3f}"

    lines = [f"job report ({report['elapsed_s']:.2f} s)", "",
             f"{'component':40} {'ticks':>8} {'median ms':>10} {'p90 ms':>10} {'max ms':>10} {'errors':>6}"]
    for name, c in report["components"].items():
        t = c["tick_ms"]
        lines.append(f"{name:40} {c['ticks']:>8} {ms(t['median']):>10} {ms(t['p90']):>10} "
                     f"{ms(t['max']):>10} {c['errors']:>6}")
    lines += ["", f"{'channel':48} {'messages':>9} {'rate/s':>9} {'drops':>6} "
                  f"{'lat med ms':>10} {'lat p90 ms':>10}"]
    for name, c in report["channels"].items():
        latencies = [r["latency_ms"] for r in c["receivers"].values()] or [{"median": None, "p90": None}]
        for latency in latencies:
            lines.append(f"{name:48} {c['messages']:>9} {c['rate']:>9.1f} {c['drops']:>6} "
                         f"{ms(latency['median']):>10} {ms(latency['p90']):>10}")
    return "\n".join(lines)
