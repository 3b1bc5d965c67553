"""openpose.EdgeCandidates — step 7: every pair of parts that a link could join."""
import numpy as np

from graphflow import Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import EdgeList, PeakList


class EdgeCandidates(_Step):
    """Step 7: for each link [part_from, part_to] in edges, all pairs of candidates of those two
    part types, except pairs farther apart than threshold_edge_size."""

    parts = Rx(PeakList, "Part candidates.", queue_size=2, policy="block")
    candidates = Tx(EdgeList, "Candidate connections.")
    edges = Param(list, [list(e) for e in paf.EDGES],
                  "Links as [part_from, part_to]; link k's field is PAF plane edges_paf[k]. "
                  "Parents before children (OpenPose COCO-18 order).", check=paf.check_links)
    threshold_edge_size = Param(float, paf.DEFAULTS["threshold_edge_size"], "Longest allowed pair, in map cells of the decoded grid; "
                                            "0 disables (saves time only; 16 cut limbs of large people).",
                                range=(0.0, None))

    def read_params(self):
        self._links = np.asarray(self.edges, np.int64).reshape(-1, 2)  # converted once, not per frame
        self._link_list = self.edges  # passed on with the pairs
        self._threshold = self.threshold_edge_size

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self.tick_on_message(self.parts)

    def tick(self):
        message = self.parts.read()
        parts = message.payload
        pairs = paf.edge_candidates(parts.peaks, self._links, self._threshold)
        self.candidates.publish(EdgeList(pairs, parts.peaks, self._link_list, parts.heatmaps, parts.pafs, None,
                                         parts.upsample, parts.transform, parts.source, parts.frame),
                                acqtime=message.acqtime)
