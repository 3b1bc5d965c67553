"""openpose.MergeSplitGraphs — step 11: rejoin people split by a missed connection, keep the whole enough."""
from graphflow import Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import SkeletonCandidates


class MergeSplitGraphs(_Step):
    """Step 11: merge two skeletons that share no part type when a scored connection (even one
    step 9 rejected) joins them with score ≥ threshold_split_score, best joins first; then drop
    the people with fewer than threshold_part_counter parts or object score below
    threshold_object_score (judged whole: a fragment is rejoined before it is judged)."""

    skeletons = Rx(SkeletonCandidates, "People from graph matching.", queue_size=2, policy="block")
    merged = Tx(SkeletonCandidates, "People after merging split pieces.")
    threshold_split_score = Param(float, paf.DEFAULTS["threshold_split_score"], "Lowest PAF score of a connection that rejoins two "
                                               "pieces; above 1 disables merging.", range=(-1.0, None))
    threshold_part_counter = Param(int, paf.DEFAULTS["threshold_part_counter"], "Fewest parts of a kept person.", range=(1, 18))
    threshold_object_score = Param(float, paf.DEFAULTS["threshold_object_score"], "Lowest (sum of part and connection scores) / parts "
                                   "of a kept person.", range=(0.0, None))

    def read_params(self):
        self._thresholds = self.threshold_split_score, self.threshold_part_counter, self.threshold_object_score

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self.tick_on_message(self.skeletons)

    def tick(self):
        message = self.skeletons.read()
        candidates = message.payload
        merged = paf.merge_split_graphs(candidates.skeletons, candidates.parts, candidates.pairs, *self._thresholds)
        self.merged.publish(SkeletonCandidates(merged, candidates.parts, candidates.pairs, candidates.heatmaps,
                                               candidates.upsample, candidates.transform, candidates.source,
                                               candidates.frame), acqtime=message.acqtime)
