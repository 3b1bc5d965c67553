"""Ports: ``Rx`` (input) and ``Tx`` (output) declarations, and the channels they become.

Each input owns a bounded queue with a policy for when it is full:

- ``"latest"``: keep the latest N, drop the oldest (default; what a live robot wants),
- ``"block"``: the publisher waits here, in the channel, until a read makes room (backpressure;
  nothing is lost). Before each wait the channel asks its runtime, which may make room itself
  (the scheduler ticks an idle receiver on the waiting thread), refuse (a wait that could never
  end raises :class:`QueueFull`), or give up because the app stops. So that worker threads
  rarely wait at all, the scheduler holds back a component while an input it publishes into is
  full, and wakes it on the read that makes room (``waiters`` tells the channel to say so).
- ``"reject"``: the new message is refused.

Drops are counted per input. Publishing passes the message by reference to every receiver.

The channels need little of whoever runs their component (its ``runtime``): ``clock()``, a
``tap`` (:class:`graphflow.tap.Tap`), and three calls: ``input_ready(component)`` when a trigger
input received, ``blocked(rx)`` before a ``block`` publish waits, ``room_made(rx)`` after a read
from an input someone waits on. :class:`graphflow.runtime.Runtime` is the plain one.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .messages import Header, Message, MessageType, freeze
from .samples import Samples

QUEUE_POLICIES = ("latest", "block", "reject")
# Times closer than this count as equal when matching acqtimes: 1.000 - 0.990 is a hair above 10 ms
# in floats, and a pair written exactly 10 ms apart must match at a 10 ms tolerance.
TIME_SLACK = 1e-9


class QueueFull(RuntimeError):
    """A ``block`` input is full and waiting for room could never end (nothing else runs to make
    room, or the receiver waits on this very publish)."""


class Rx:
    """Declares an input port: ``image = Rx(Image, "Frames to encode.")``."""

    def __init__(self, message_type: type[MessageType], doc: str = "", *, queue_size: int = 8,
                 policy: str = "latest"):
        if not (isinstance(message_type, type) and issubclass(message_type, MessageType)):
            raise TypeError(f"Rx needs a MessageType subclass, got {message_type!r}")
        if policy not in QUEUE_POLICIES:
            raise ValueError(f"queue policy must be one of {QUEUE_POLICIES}, got {policy!r}")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.message_type = message_type
        self.doc = doc
        self.queue_size = queue_size
        self.policy = policy
        self.name = ""

    direction = "rx"

    def __set_name__(self, owner, name):
        self.name = name

    def describe(self) -> dict:
        return {"name": self.name, "direction": "rx", "message": self.message_type.wire_name,
                "doc": self.doc, "queue_size": self.queue_size, "policy": self.policy}


class Tx:
    """Declares an output port: ``tensor = Tx(Tensor, "Encoded image.")``."""

    def __init__(self, message_type: type[MessageType], doc: str = ""):
        if not (isinstance(message_type, type) and issubclass(message_type, MessageType)):
            raise TypeError(f"Tx needs a MessageType subclass, got {message_type!r}")
        self.message_type = message_type
        self.doc = doc
        self.name = ""

    direction = "tx"

    def __set_name__(self, owner, name):
        self.name = name

    def describe(self) -> dict:
        return {"name": self.name, "direction": "tx", "message": self.message_type.wire_name,
                "doc": self.doc}


class InputChannel:
    """The live queue behind an ``Rx`` of one component."""

    __slots__ = ("decl", "component", "runtime", "name", "message_type", "queue_size", "policy", "sources",
                 "dropped", "received", "consumed", "latency", "is_trigger", "waiters", "_queue", "_lock",
                 "_room", "_publishers_waiting", "_synced")

    def __init__(self, decl: Rx, component: Any):
        self.decl = decl
        self.component = component  # the Codelet it belongs to
        self.runtime: Any = component.runtime  # kept in step by Codelet.runtime
        self.name: str = f"{component.full_name}/{decl.name}"
        self.message_type: type[MessageType] = decl.message_type
        self.queue_size: int = decl.queue_size
        self.policy: str = decl.policy
        self.sources: list[OutputChannel] = []
        self.dropped: int = 0
        self.received: int = 0
        self.consumed = 0  # messages taken (read, or skipped by read_latest): the scheduler's progress test
        self.latency: Samples = Samples()  # acquisition → read, seconds (for the job report)
        self.is_trigger = False
        self.waiters = 0  # components the scheduler holds back until there is room here (its lock)
        self._queue: deque[Message] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # a block publisher waits on it
        self._publishers_waiting = 0  # on _room (this channel's lock)
        self._synced: Message | None = None  # set by a synchronized trigger when inputs match

    def configure(self, queue_size: int | None = None, policy: str | None = None) -> None:
        if policy is not None:
            if policy not in QUEUE_POLICIES:
                raise ValueError(f"queue policy must be one of {QUEUE_POLICIES}, got {policy!r}")
            self.policy = policy
        if queue_size is not None:
            if queue_size < 1:
                raise ValueError("queue size must be at least 1")
            self.queue_size = queue_size

    # -- publisher side ----------------------------------------------------------------------
    def deliver(self, message: Message) -> bool:
        """Queue ``message`` by this input's policy; returns False when it was refused."""
        queue = self._queue
        with self._lock:
            if len(queue) >= self.queue_size:
                if self.policy == "latest":
                    queue.popleft()
                    self.dropped += 1
                elif self.policy == "reject":
                    self.dropped += 1
                    return False
                elif not self._wait_for_room():
                    self.dropped += 1  # the app is stopping
                    return False
            queue.append(message)
            self.received += 1
        if self.is_trigger:
            self.runtime.input_ready(self.component)
        return True

    def _wait_for_room(self) -> bool:
        """Block policy, queue full: wait until a read makes room. Caller holds the lock."""
        self._publishers_waiting += 1
        try:
            while len(self._queue) >= self.queue_size:
                self._lock.release()
                try:
                    go_on = self.runtime.blocked(self)  # may tick the receiver, or raise QueueFull
                finally:
                    self._lock.acquire()
                if not go_on:
                    return False
                if len(self._queue) >= self.queue_size:
                    self._room.wait(0.01)  # a read notifies; the timeout re-asks the runtime
        finally:
            self._publishers_waiting -= 1
        return True

    # -- receiver side -----------------------------------------------------------------------
    def available(self) -> int:
        """Number of messages waiting (a matched synchronized message counts)."""
        return len(self._queue) + (self._synced is not None)

    def read(self) -> Message | None:
        """Take the oldest waiting message (the matched one under synchronized ticking)."""
        if self._synced is not None:
            message, self._synced = self._synced, None
        else:
            with self._lock:
                if not self._queue:
                    return None
                message = self._queue.popleft()
                if self._publishers_waiting:
                    self._room.notify_all()
            self._made_room()
        self._count_read(message)
        return message

    def read_latest(self) -> Message | None:
        """Take the newest waiting message and discard the older ones (not counted as drops)."""
        with self._lock:
            if not self._queue:
                message = None
            else:
                message = self._queue.pop()
                self.consumed += len(self._queue)
                self._queue.clear()
                if self._publishers_waiting:
                    self._room.notify_all()
        if message is None:
            return self.read()
        self._made_room()
        self._synced = None
        self._count_read(message)
        return message

    def full(self) -> bool:
        return len(self._queue) >= self.queue_size

    def _made_room(self) -> None:
        """After messages left the queue: tell the runtime when someone waits for room here."""
        if self.waiters:
            self.runtime.room_made(self)

    def _count_read(self, message: Message) -> None:
        self.consumed += 1
        runtime = self.runtime
        latency = runtime.clock() - message.header.acqtime
        self.latency.add(latency)
        for observe in runtime.tap.on_received:
            observe(self, message, latency)

    def peek_acqtimes(self) -> list[float]:
        with self._lock:
            return [m.header.acqtime for m in self._queue]

    # Synchronized.ready() calls these two under the scheduler's lock, so they leave telling
    # the runtime about the room they make to the scheduler (see Scheduler._policy_ready).
    def _drop_older_than(self, reference: float, tolerance: float) -> Message | None:
        """Synchronization helper for a ``reference`` no older than any head: drop the messages
        further than ``tolerance`` before it and return the new head, which then lies within
        tolerance (without removing it), or None when the queue ran empty.

        Dropping and matching are one comparison (``reference - acqtime > tolerance``, with
        :data:`TIME_SLACK`), so every head is either dropped or matched: no float rounding can
        leave one that is neither."""
        with self._lock:
            queue = self._queue
            dropped = 0
            limit = tolerance + TIME_SLACK
            while queue and reference - queue[0].header.acqtime > limit:
                queue.popleft()
                dropped += 1
            if dropped:
                self.dropped += dropped
                if self._publishers_waiting:
                    self._room.notify_all()
            return queue[0] if queue else None

    def _drop_oldest(self) -> bool:
        """Drop the oldest waiting message (counted as a drop); False when there was none."""
        with self._lock:
            if not self._queue:
                return False
            self._queue.popleft()
            self.dropped += 1
            if self._publishers_waiting:
                self._room.notify_all()
        return True

    def _take_synced(self) -> None:
        with self._lock:
            self._synced = self._queue.popleft()
            if self._publishers_waiting:
                self._room.notify_all()

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._synced = None
            if self._publishers_waiting:
                self._room.notify_all()
        self._made_room()


class OutputChannel:
    """The live publisher behind a ``Tx`` of one component; its name is the channel name."""

    __slots__ = ("decl", "component", "runtime", "name", "message_type", "receivers", "published", "first_time",
                 "last_time", "last")

    def __init__(self, decl: Tx, component: Any):
        self.decl = decl
        self.component = component  # the Codelet it belongs to
        self.runtime: Any = component.runtime  # kept in step by Codelet.runtime
        self.name: str = f"{component.full_name}/{decl.name}"
        self.message_type: type[MessageType] = decl.message_type
        self.receivers: list[InputChannel] = []
        self.published: int = 0
        self.first_time: float = 0.0  # pubtime of the first and the last message (for the job report)
        self.last_time: float = 0.0
        self.last: Message | None = None

    def connect(self, receiver: InputChannel) -> None:
        self.receivers.append(receiver)
        receiver.sources.append(self)

    def publish(self, payload: MessageType, acqtime: float | None = None) -> Message:
        """Send ``payload`` to every connected input; ``acqtime`` defaults to now.

        The payload's arrays become read-only: receivers share them."""
        if not isinstance(payload, self.message_type):
            raise TypeError(f"{self.name} publishes {self.message_type.wire_name}, "
                            f"got {type(payload).__name__}")
        runtime = self.runtime
        now = runtime.clock()
        message = Message(Header(now if acqtime is None else acqtime, now), payload)
        freeze(payload)
        if not self.published:
            self.first_time = now
        self.published += 1
        self.last_time = now
        self.last = message
        for observe in runtime.tap.on_published:
            observe(self, message)
        for receiver in self.receivers:
            receiver.deliver(message)
        return message
