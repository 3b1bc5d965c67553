"""demo.Scale — multiplies each number by a gain.
"""
from graphflow import Codelet, Param, Rx, Tx

from .messages import Number


class Scale(Codelet):
    """Multiplies every number it receives by `gain`."""

    number = Rx(Number, "Numbers in.")
    scaled = Tx(Number, "Numbers times gain.")
    gain = Param(float, 2.0, "Multiplier.")

    def start(self):
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        self.scaled.publish(Number(message.payload.value * self.gain), acqtime=message.acqtime)
