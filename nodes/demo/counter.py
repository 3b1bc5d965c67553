"""demo.Counter — a periodic source of numbers.
"""
from graphflow import Codelet, Param, Period, Tx

from .messages import Number


class Counter(Codelet):
    """Publishes start, start+step, ... one number per tick; exhausted after `count` numbers."""

    number = Tx(Number, "The next number.")
    tick_period = Param(Period, "10Hz", "How often to publish.", live=False)
    count = Param(int, 10, "How many numbers to publish; 0 publishes forever.", range=(0, None))
    start_value = Param(float, 0.0, "First number.")
    step = Param(float, 1.0, "Increment between numbers.")

    def start(self):
        self.sent = 0
        self.tick_periodically(self.tick_period)

    def tick(self):
        self.number.publish(Number(self.start_value + self.sent * self.step))
        self.sent += 1
        if self.count and self.sent >= self.count:
            self.report_exhausted()
