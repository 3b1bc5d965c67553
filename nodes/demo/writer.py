"""demo.NumberWriter — writes every number it receives to a JSON Lines file.
"""
import io
import json
import math
from pathlib import Path

from graphflow import Codelet, NodeError, Param, Rx
from graphflow.files import open_lines, resuming

from .messages import Number


class NumberWriter(Codelet):
    """Appends {"acqtime", "value"} lines to `path`; the file is complete once the app stops."""

    number = Rx(Number, "Numbers to write.", queue_size=64, policy="block")
    path = Param(str, doc="Output file (JSON Lines); its folder is created.", live=False)

    def start(self):
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # restarted after a failure (a split app's "restart": true): the lines before it stay
        self.file = io.TextIOWrapper(open_lines(target, append=resuming()), encoding="utf-8")
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        value = message.payload.value
        if not math.isfinite(value):  # JSON has no Infinity or NaN: the file would not parse
            raise NodeError(f"{value} cannot be written to {self.path} as JSON (acqtime {message.acqtime})")
        self.file.write(json.dumps({"acqtime": message.acqtime, "value": value}) + "\n")

    def stop(self):
        self.file.close()
