"""openpose.EdgeThreshold — step 9: keep the connections the PAF supports."""
from graphflow import Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import EdgeList


class EdgeThreshold(_Step):
    """Step 9: a connection is kept when its score ≥ threshold_edge_score and at least
    threshold_edge_sampling_counter of its samples passed. Rejected ones stay in the message
    (pairs): step 11 uses them to rejoin split skeletons; kept holds the ones that pass."""

    scored = Rx(EdgeList, "Scored candidate connections.", queue_size=2, policy="block")
    edges = Tx(EdgeList, "The same connections, with `kept` (those that pass) set.")
    threshold_edge_score = Param(float, paf.DEFAULTS["threshold_edge_score"], "Lowest mean PAF score of a kept connection.", range=(-1.0, 1.0))
    threshold_edge_sampling_counter = Param(int, paf.DEFAULTS["threshold_edge_sampling_counter"], "Fewest passing samples of a kept connection.",
                                            range=(0, 100))

    def read_params(self):
        self._thresholds = self.threshold_edge_score, self.threshold_edge_sampling_counter

    def start(self):
        self.read_params()
        self.tick_on_message(self.scored)

    def tick(self):
        message = self.scored.read()
        scored = message.payload
        kept = paf.edge_threshold(scored.pairs, *self._thresholds)
        self.edges.publish(EdgeList(scored.pairs, scored.parts, scored.links, scored.heatmaps, scored.pafs, kept,
                                    scored.upsample, scored.transform, scored.source, scored.frame),
                           acqtime=message.acqtime)
