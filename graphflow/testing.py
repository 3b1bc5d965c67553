"""Unit-test one node alone: feed messages, tick, read what it published. No threads, no scheduler.

    h = Harness(Doubler, config={"gain": 3.0})
    h.start()
    h.feed("value", Number(2.0), acqtime=1.0)
    h.run_pending()                      # ticks while its tick policy says so
    assert h.outputs("doubled")[0].payload.value == 6.0

A clock-driven component (``tick_periodically``) is due by the harness's :class:`ManualClock`:
``h.run_until(0.35)`` moves the clock to each due time up to 0.35 s and ticks there (a 10 Hz
source: at 0, 0.1, 0.2 and 0.3), as the scheduler would, until the component is exhausted.
"""
from __future__ import annotations

from typing import Any

from .codelet import Codelet
from .messages import Header, Message, MessageType
from .runtime import Runtime
from .scheduler import ManualClock


class _Capture:
    def __init__(self):
        self.messages: dict[str, list[Message]] = {}

    def published(self, channel, message) -> None:
        self.messages.setdefault(channel.decl.name, []).append(message)


class Harness:
    """Wraps one component with a :class:`ManualClock` (``harness.clock``) and captures its outputs."""

    def __init__(self, codelet: type[Codelet], config: dict | None = None, *, node: str = "node",
                 name: str = "component", clock: ManualClock | None = None):
        self.clock = clock or ManualClock()
        self.runtime = Runtime(clock=self.clock)
        self._capture = _Capture()
        self.runtime.tap.subscribe(self._capture)
        self.component = codelet(node, name, config, runtime=self.runtime)
        self.ticks = 0
        self.due: float | None = None  # when a clock-driven component is next due (None: by messages)

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Harness":
        self.component.start()
        policy = self.component.tick_policy
        self.due = None if policy is None else policy.next_due(None, self.clock())
        return self

    def stop(self) -> None:
        self.component.stop()

    def tick(self, times: int = 1) -> None:
        """Tick unconditionally (whatever the tick policy, even once exhausted)."""
        for _ in range(times):
            self.component.apply_pending_params()
            self.component.tick()
            self.ticks += 1
            if self.due is not None:
                self.due = self.component.tick_policy.next_due(self.due, self.clock())

    def ready(self) -> bool:
        """Whether the scheduler would tick the component now: a clock-driven one when it is due
        (at or before the clock), one driven by messages when its policy says so; not once it
        has reported itself exhausted."""
        policy = self.component.tick_policy
        if policy is None or self.component.exhausted:
            return False
        if self.due is not None:
            return self.due <= self.clock()
        return policy.ready()

    def run_pending(self, limit: int = 10_000) -> int:
        """Tick while the component is ready now (see :meth:`ready`); returns the number of ticks."""
        count = 0
        while count < limit and self.ready():
            self.tick()
            count += 1
        return count

    def run_until(self, time: float, limit: int = 10_000) -> int:
        """Move the clock to each time the component is due, up to ``time``, ticking there (and
        whenever its messages make it ready); then leave the clock at ``time``. Returns the ticks."""
        count = self.run_pending(limit)
        while count < limit and self.due is not None and self.due <= time and not self.component.exhausted:
            self.clock.set(self.due)
            ticked = self.run_pending(limit - count)
            if not ticked:
                break
            count += ticked
        self.clock.set(time)
        return count + self.run_pending(limit - count)

    # messages --------------------------------------------------------------------------------
    def feed(self, port: str, payload: MessageType, acqtime: float | None = None) -> Message:
        """Deliver ``payload`` to input ``port`` as if an upstream node had published it."""
        if port not in self.component.inputs:
            raise KeyError(f"{type(self.component).__name__} has no input {port!r} "
                           f"(it has: {sorted(self.component.inputs)})")
        rx = self.component.inputs[port]
        if not isinstance(payload, rx.message_type):
            raise TypeError(f"input {port!r} takes {rx.message_type.wire_name}, got {type(payload).__name__}")
        now = self.clock()
        payload.freeze()
        message = Message(Header(now if acqtime is None else acqtime, now), payload)
        rx.deliver(message)
        return message

    def outputs(self, port: str) -> list[Message]:
        """Every message published on ``port`` so far (oldest first)."""
        if port not in self.component.outputs:
            raise KeyError(f"{type(self.component).__name__} has no output {port!r} "
                           f"(it has: {sorted(self.component.outputs)})")
        return self._capture.messages.get(port, [])

    def take(self, port: str) -> list[Message]:
        """Like :meth:`outputs`, and forget them."""
        messages = list(self.outputs(port))
        self._capture.messages.pop(port, None)
        return messages

    def set_param(self, name: str, value: Any) -> None:
        self.component.set_param(name, value)
