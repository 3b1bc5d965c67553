"""Tick policies: when the scheduler ticks a component. A component chooses one in ``start``
(``tick_periodically``, ``tick_on_message``, ``tick_on_sync``). ``ready`` runs on every
publish to a trigger input: setup.py compiles this module with the core."""
from __future__ import annotations

from .ports import InputChannel


class TickPolicy:
    def ready(self) -> bool:
        """Whether the component should tick now (asked when a trigger input receives)."""
        return False

    def describe(self) -> str:
        raise NotImplementedError


class Periodic(TickPolicy):
    """Tick every ``period`` seconds, phase-locked to the start time (no drift)."""

    def __init__(self, period: float):
        self.period = period

    def describe(self) -> str:
        return f"periodic {self.period:g}s"


class OnMessage(TickPolicy):
    """Tick when any of ``triggers`` has a message waiting."""

    def __init__(self, triggers: tuple[InputChannel, ...]):
        self.triggers = triggers

    def ready(self) -> bool:
        for rx in self.triggers:
            if rx._queue or rx._synced is not None:
                return True
        return False

    def describe(self) -> str:
        return "on message " + ", ".join(rx.decl.name for rx in self.triggers)


class Synchronized(TickPolicy):
    """Tick when every input in ``triggers`` holds a message whose acqtime lies within
    ``tolerance`` of the others'. Older unmatched messages are dropped (counted on their input);
    during the tick each ``read()`` returns the matched message."""

    def __init__(self, triggers: tuple[InputChannel, ...], tolerance: float):
        self.triggers = triggers
        self.tolerance = tolerance

    def ready(self) -> bool:
        if all(rx._synced is not None for rx in self.triggers):
            return True
        while True:
            heads = [rx.peek_acqtimes() for rx in self.triggers]
            if not all(heads):
                return False
            newest_head = max(times[0] for times in heads)
            matched = [rx._pop_until(newest_head, self.tolerance) for rx in self.triggers]
            if all(m is not None for m in matched):
                for rx in self.triggers:
                    rx._take_synced()
                return True
            if not all(rx.available() for rx in self.triggers):
                return False

    def describe(self) -> str:
        names = ", ".join(rx.decl.name for rx in self.triggers)
        return f"synchronized {names} (tolerance {self.tolerance:g}s)"
