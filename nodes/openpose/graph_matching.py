"""openpose.GraphMatching — step 10: assemble people from the kept connections."""
import numpy as np

from graphflow import Rx, Tx

from . import paf
from ._step import _Step
from .messages import EdgeList, SkeletonCandidates


class GraphMatching(_Step):
    """Step 10: greedy one-to-one matching per link by PAF score + both ends' confidence, then
    people as connected groups of connections (CMU OpenPose rules where a group repeats a part
    type). Every person is passed on, however few its parts: step 11 rejoins fragments and then
    judges the people whole."""

    edges = Rx(EdgeList, "Connections with `kept` set.", queue_size=2, policy="block")
    skeletons = Tx(SkeletonCandidates, "People, in map cells.")

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self._links_seen = self._links = None
        self.tick_on_message(self.edges)

    def tick(self):
        message = self.edges.read()
        connections = message.payload
        if connections.links is not self._links_seen:  # in one process: the same list every frame
            self._links_seen = connections.links
            self._links = np.asarray(connections.links, np.int64).reshape(-1, 2)
        skeletons = paf.graph_matching(connections.parts, connections.kept_pairs(), self._links)
        self.skeletons.publish(SkeletonCandidates(skeletons, connections.parts, connections.pairs,
                                                  connections.heatmaps, connections.upsample,
                                                  connections.transform, connections.source, connections.frame),
                               acqtime=message.acqtime)
