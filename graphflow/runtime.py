"""Runtime: what a component needs from whoever runs it (the scheduler, or the test harness)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import QueueFull
from .ledger import Ledger

if TYPE_CHECKING:
    from .codelet import Codelet
    from .ports import InputChannel


class Runtime:
    """What a component needs from whoever runs it. This default one serves the test harness:
    a settable clock, its own ledger, no threads."""

    def __init__(self, clock=None, ledger: Ledger | None = None):
        self.clock = clock or time.monotonic
        self.ledger = ledger or Ledger()

    def now(self) -> float:
        return self.clock()

    def input_ready(self, component: Codelet) -> None:
        pass

    def wait_for_space(self, rx: InputChannel) -> bool:
        raise QueueFull(f"input {rx.name} is full ({rx.queue_size}) with policy 'block' "
                        f"and nothing else runs here to make room")

    def space_freed(self, rx: InputChannel) -> None:
        pass
