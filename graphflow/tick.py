"""Tick policies: when the scheduler ticks a component. A component chooses one in ``start``
(``tick_periodically``, ``tick_on_message``, ``tick_on_sync``).

A policy answers two questions, and the scheduler asks every policy both, with no case for any
one kind: ``next_due`` (the clock time it is next due, or None when only messages make it due)
and ``ready`` (whether the messages waiting make it due now; asked when a trigger input receives).
(Queue policies, what an input does when it is full, are a different thing: :mod:`graphflow.ports`.)
"""
from __future__ import annotations

from .ports import InputChannel


class TickPolicy:
    # Whether something other than the component's inputs makes it due (the clock, a socket): a
    # component with such a policy and no connected input is a source; the app ends when every
    # source is exhausted (or has ticked --max-ticks times).
    self_driven = False

    def next_due(self, previous: float | None, now: float) -> float | None:
        """When the component is next due by the clock: ``previous`` is the time it was last
        due (None before its first tick). None: only messages make it due."""
        return None

    def ready(self) -> bool:
        """Whether the component should tick now (asked when a trigger input receives)."""
        return False

    def describe(self) -> str:
        raise NotImplementedError

    def starved(self) -> tuple:
        """The unconnected inputs that keep this policy from ever making its component due."""
        return ()

    def relieve(self, rx: InputChannel) -> bool:
        """The graph is stalled: nothing runs or can run, and every source waits for room in a full
        ``block`` input, ``rx`` of this policy's component among them, while this policy is not
        ready. Make room in ``rx`` where waiting could never end; True when it did. (Only a policy
        that holds messages back while its inputs fill needs to.)"""
        return False


class Periodic(TickPolicy):
    """Tick every ``period`` seconds, phase-locked to the first tick (no drift): tick k is due at
    first + k·period; a late tick skips the slots it missed instead of bunching up."""

    self_driven = True

    def __init__(self, period: float):
        self.period = period

    def next_due(self, previous: float | None, now: float) -> float | None:
        if previous is None:
            return now
        period = self.period
        if period <= 0:
            return now
        due = previous + period
        if due < now:
            due += period * ((now - due) // period + 1)  # skip missed slots, keep the phase
        return due

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

    def starved(self) -> tuple:
        return () if any(rx.sources for rx in self.triggers) else self.triggers  # one connected trigger is enough


class Synchronized(TickPolicy):
    """Tick when every input in ``triggers`` holds a message whose acqtime lies within
    ``tolerance`` of the newest head's. Older unmatched messages are dropped (counted on their
    input); during the tick each ``read()`` returns the matched message."""

    def __init__(self, triggers: tuple[InputChannel, ...], tolerance: float):
        self.triggers = triggers
        self.tolerance = tolerance

    def starved(self) -> tuple:
        return tuple(rx for rx in self.triggers if not rx.sources)  # every trigger must have a message

    def ready(self) -> bool:
        if all(rx._synced is not None for rx in self.triggers):
            return True
        heads = [rx.peek_acqtimes() for rx in self.triggers]
        if not all(heads):
            return False
        reference = max(times[0] for times in heads)  # the newest head: no match can be older
        matched = [rx._drop_older_than(reference, self.tolerance) for rx in self.triggers]
        if any(m is None for m in matched):
            return False  # an input ran empty; its next message asks again
        for rx in self.triggers:
            rx._take_synced()
        return True

    def relieve(self, rx: InputChannel) -> bool:
        """Drop the oldest message of ``rx``: nothing left to run could send its match (a
        component upstream published nothing for it), and its publisher waits for the room."""
        return rx._drop_oldest()

    def describe(self) -> str:
        names = ", ".join(rx.decl.name for rx in self.triggers)
        return f"synchronized {names} (tolerance {self.tolerance:g}s)"
