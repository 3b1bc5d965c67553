"""openpose.MergeSplitGraphs — step 11: rejoin people split by a missed connection."""
from graphflow import Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import SkeletonCandidates


class MergeSplitGraphs(_Step):
    """Step 11: merge two skeletons that share no part type when a scored connection (even one
    step 9 rejected) joins them with score ≥ threshold_split_score; best joins first."""

    skeletons = Rx(SkeletonCandidates, "People from graph matching.", queue_size=2, policy="block")
    merged = Tx(SkeletonCandidates, "People after merging split pieces.")
    threshold_split_score = Param(float, paf.DEFAULTS["threshold_split_score"], "Lowest PAF score of a connection that rejoins two "
                                               "pieces; above 1 disables merging.", range=(-1.0, None))

    def read_params(self):
        self._threshold = self.threshold_split_score

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self.tick_on_message(self.skeletons)

    def tick(self):
        message = self.skeletons.read()
        candidates = message.payload
        merged = paf.merge_split_graphs(candidates.skeletons, candidates.parts, candidates.pairs, self._threshold)
        self.merged.publish(SkeletonCandidates(merged, candidates.parts, candidates.pairs, candidates.heatmaps,
                                               candidates.upsample, candidates.transform, candidates.source,
                                               candidates.frame), acqtime=message.acqtime)
