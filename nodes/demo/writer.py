"""demo.NumberWriter — writes every number it receives to a JSON Lines file.
"""
import json
from pathlib import Path

from graphflow import Codelet, Param, Rx

from .messages import Number


class NumberWriter(Codelet):
    """Appends {"acqtime", "value"} lines to `path`; the file is complete once the app stops."""

    number = Rx(Number, "Numbers to write.", queue_size=64, policy="block")
    path = Param(str, doc="Output file (JSON Lines); its folder is created.", live=False)

    def start(self):
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.file = target.open("w", encoding="utf-8")
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        self.file.write(json.dumps({"acqtime": message.acqtime, "value": message.payload.value}) + "\n")

    def stop(self):
        self.file.close()
