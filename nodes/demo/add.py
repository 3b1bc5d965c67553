"""demo.Add — adds two numbers acquired at (nearly) the same time.
"""
from graphflow import Codelet, Param, Period, Rx, Tx

from .messages import Number


class Add(Codelet):
    """Adds pairs of numbers whose acquisition times lie within `tolerance` of each other."""

    a = Rx(Number, "First addend.")
    b = Rx(Number, "Second addend.")
    total = Tx(Number, "a + b.")
    tolerance = Param(Period, "1ms", "Largest acqtime difference of a matched pair.", live=False)

    def start(self):
        self.tick_on_sync(self.a, self.b, tolerance=self.tolerance)

    def tick(self):
        a, b = self.a.read(), self.b.read()
        self.total.publish(Number(a.payload.value + b.payload.value), acqtime=a.acqtime)
