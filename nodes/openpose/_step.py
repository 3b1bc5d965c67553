"""The decoder step nodes' common base: a node's params are read once, not on every tick."""
from graphflow import Codelet


class _Step(Codelet):
    """A decoder step node. ``read_params`` copies what its step needs from the params into plain
    attributes (converted once: link tables as arrays, derived flags) in ``start()``, and again
    after a live change (``set_param``, applied between ticks), so that a tick only reads its
    input, calls its step function and publishes the result."""

    def read_params(self) -> None:
        """Copy the params the step needs into attributes (each node defines it)."""

    def apply_pending_params(self) -> None:
        super().apply_pending_params()
        self.read_params()
