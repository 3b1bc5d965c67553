"""Unit-test one node alone: feed messages, tick, read what it published. No threads, no scheduler.

    h = Harness(Doubler, config={"gain": 3.0})
    h.start()
    h.feed("value", Number(2.0), acqtime=1.0)
    h.tick()
    assert h.outputs("doubled")[0].payload.value == 6.0
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

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Harness":
        self.component.start()
        return self

    def stop(self) -> None:
        self.component.stop()

    def tick(self, times: int = 1) -> None:
        """Tick unconditionally (whatever the tick policy)."""
        for _ in range(times):
            self.component.apply_pending_params()
            self.component.tick()
            self.ticks += 1

    def ready(self) -> bool:
        """Whether the component's on-message or synchronized policy would tick it now."""
        policy = self.component.tick_policy
        return policy is not None and policy.ready()

    def run_pending(self, limit: int = 10_000) -> int:
        """Tick while the message policy says ready; returns the number of ticks."""
        count = 0
        while count < limit and self.ready():
            self.tick()
            count += 1
        return count

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
