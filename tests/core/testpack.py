"""Codelets used by the core tests (loaded as a node pack by path)."""
import threading
import time

from graphflow import Codelet, Param, Period, Rx, Tx
from graphflow.packs.demo.messages import Number

EVENTS: list = []  # (event, component full name, value) in the order they happened
_lock = threading.Lock()


def record(*event):
    with _lock:
        EVENTS.append(event)


class Source(Codelet):
    """Publishes 0, 1, 2, ... `count` numbers, one per tick, then is exhausted."""
    number = Tx(Number, "Numbers.")
    tick_period = Param(Period, "1ms", "Period.")
    count = Param(int, 5, "How many.")

    def start(self):
        self.sent = 0
        self.tick_periodically(self.tick_period)

    def tick(self):
        record("tick", self.full_name, self.now())
        self.number.publish(Number(float(self.sent)))
        self.sent += 1
        if self.sent >= self.count:
            self.report_exhausted()

    def stop(self):
        record("stop", self.full_name, None)


class Collect(Codelet):
    """Keeps every number it receives in `values` (also sleeps `work_s` per tick)."""
    number = Rx(Number, "Numbers.", queue_size=4, policy="block")
    relay = Tx(Number, "The same numbers, passed on.")
    work_s = Param(float, 0.0, "Seconds of simulated work per tick.")

    def start(self):
        self.values = []
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        if self.work_s:
            time.sleep(self.work_s)
        self.values.append(message.payload.value)
        record("value", self.full_name, message.payload.value)
        self.relay.publish(message.payload, acqtime=message.acqtime)

    def stop(self):
        record("stop", self.full_name, len(self.values))


class Faulty(Codelet):
    """Raises on the message whose value equals `fail_on`."""
    number = Rx(Number, "Numbers.")
    fail_on = Param(float, 2.0, "Value that makes the tick raise.")

    def start(self):
        self.seen = []
        self.tick_on_message(self.number)

    def tick(self):
        value = self.number.read().payload.value
        if value == self.fail_on:
            raise RuntimeError(f"cannot handle {value}")
        self.seen.append(value)


class Overlap(Codelet):
    """Detects whether two components of one node ever tick at the same time."""
    tick_period = Param(Period, "0.5ms", "Period.")
    active = {}
    overlaps = []

    def start(self):
        self.tick_periodically(self.tick_period)
        self.ticks = 0

    def tick(self):
        node = Overlap.active.setdefault(self.node_name, [0])
        with _lock:
            node[0] += 1
            if node[0] > 1:
                Overlap.overlaps.append(self.full_name)
        time.sleep(0.001)
        with _lock:
            node[0] -= 1
        self.ticks += 1
        if self.ticks >= 30:
            self.report_exhausted()


class SlowWriter(Codelet):
    """Writes each number to a file, one line each, flushed, after ``work_s`` of simulated work."""
    number = Rx(Number, "Numbers.", queue_size=50, policy="block")
    path = Param(str, doc="The file.")
    work_s = Param(float, 0.01, "Seconds of simulated work per number.")

    def start(self):
        self.file = open(self.path, "w", encoding="utf-8")
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        time.sleep(self.work_s)
        self.file.write(f"{message.payload.value:g}\n")
        self.file.flush()

    def stop(self):
        self.file.close()
