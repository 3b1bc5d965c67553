"""The job report's numbers: per component ticks, tick durations and errors; per channel
messages, rate, drops and acquisition-to-receive latency. The channels and the scheduler keep the
raw counts (:class:`~graphflow.samples.Samples`); this module only reads them. The text form of
the report is the command line's (``graphflow.cli``)."""
from __future__ import annotations

from .samples import Samples


class Stats:
    """Tick durations and errors per component (written by the scheduler) and a view of the
    channels' own counters, read into :meth:`report`."""

    def __init__(self, clock):
        self._clock = clock
        self.started = clock()  # until the components have started; then when ticking began
        self.start_s: float | None = None  # how long the components' start() took
        self.ticks: dict[str, Samples] = {}
        self.errors: dict[str, int] = {}
        self._channels: dict = {}  # channel name -> OutputChannel

    def ticking_began(self, at: float) -> None:
        """Rates and the elapsed time count from here: loading a model or compiling kernels in
        start() is not running time."""
        self.start_s = at - self.started
        self.started = at

    def track(self, components) -> None:
        for component in components:
            self.ticks.setdefault(component.full_name, Samples())
            for tx in component.outputs.values():
                self._channels[tx.name] = tx

    def error(self, component) -> None:
        self.errors[component.full_name] = self.errors.get(component.full_name, 0) + 1

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
        return {"elapsed_s": elapsed, "start_s": self.start_s, "components": components, "channels": channels}
