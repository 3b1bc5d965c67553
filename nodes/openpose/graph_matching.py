"""openpose.GraphMatching — step 10: assemble people from the kept connections."""
from graphflow import Param, Rx, Tx

import numpy as np

from . import paf
from ._step import _Step
from .messages import EdgeList, SkeletonCandidates


class GraphMatching(_Step):
    """Step 10: greedy one-to-one matching per link by PAF score + both ends' confidence, then
    people as connected groups of connections (CMU OpenPose rules where a group repeats a part
    type); people with fewer than threshold_part_counter parts or object score below
    threshold_object_score are dropped."""

    edges = Rx(EdgeList, "Connections with `kept` set.", queue_size=2, policy="block")
    skeletons = Tx(SkeletonCandidates, "People, in map cells.")
    threshold_part_counter = Param(int, paf.DEFAULTS["threshold_part_counter"], "Fewest parts of a kept person.", range=(1, 18))
    threshold_object_score = Param(float, paf.DEFAULTS["threshold_object_score"], "Lowest (sum of part and connection scores) / parts "
                                               "of a kept person.", range=(0.0, None))

    def read_params(self):
        self._thresholds = self.threshold_part_counter, self.threshold_object_score

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self._links_seen = self._links = None
        self.tick_on_message(self.edges)

    def tick(self):
        message = self.edges.read()
        connections = message.payload
        if connections.links is not self._links_seen:  # in one process: the same list every frame
            self._links_seen = connections.links
            self._links = np.asarray(connections.links, np.int64).reshape(-1, 2)
        skeletons = paf.graph_matching(connections.parts, connections.kept_pairs(), self._links, *self._thresholds)
        self.skeletons.publish(SkeletonCandidates(skeletons, connections.parts, connections.pairs,
                                                  connections.heatmaps, connections.upsample,
                                                  connections.transform, connections.source, connections.frame),
                               acqtime=message.acqtime)
