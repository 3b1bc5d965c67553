"""openpose.EdgeCandidates — step 7: every pair of parts that a link could join."""
from graphflow import Codelet, Param, Rx, Tx

from . import paf
from .messages import EdgeList, PeakList


class EdgeCandidates(Codelet):
    """Step 7: for each link [part_from, part_to] in edges, all pairs of candidates of those two
    part types, except pairs farther apart than threshold_edge_size."""

    parts = Rx(PeakList, "Part candidates.", queue_size=2, policy="block")
    candidates = Tx(EdgeList, "Candidate connections.")
    edges = Param(list, [list(e) for e in paf.EDGES],
                  "Links as [part_from, part_to]; link k's field is PAF plane edges_paf[k]. "
                  "Parents before children (OpenPose COCO-18 order).")
    threshold_edge_size = Param(float, paf.DEFAULTS["threshold_edge_size"], "Longest allowed pair, in map cells of the decoded grid; "
                                            "0 disables (saves time only; 16 cut limbs of large people).",
                                range=(0.0, None))

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.tick_on_message(self.parts)

    def tick(self):
        message = self.parts.read()
        parts = message.payload
        pairs = paf.edge_candidates(parts.peaks, self.edges, self.threshold_edge_size)
        self.candidates.publish(EdgeList(pairs, parts.peaks, self.edges, parts.heatmaps, parts.pafs, None,
                                         parts.upsample, parts.transform, parts.source, parts.frame),
                                acqtime=message.acqtime)
