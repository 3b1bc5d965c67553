"""openpose.GraphMatching — step 10: assemble people from the kept connections."""
from graphflow import Codelet, Param, Rx, Tx

from . import paf
from .messages import EdgeList, SkeletonCandidates


class GraphMatching(Codelet):
    """Step 10: greedy one-to-one matching per link by PAF score + both ends' confidence, then
    people as connected groups of connections (CMU OpenPose rules where a group repeats a part
    type); people with fewer than threshold_part_counter parts or object score below
    threshold_object_score are dropped."""

    edges = Rx(EdgeList, "Connections with `kept` set.", queue_size=2, policy="block")
    skeletons = Tx(SkeletonCandidates, "People, in map cells.")
    threshold_part_counter = Param(int, paf.DEFAULTS["threshold_part_counter"], "Fewest parts of a kept person.", range=(1, 18))
    threshold_object_score = Param(float, paf.DEFAULTS["threshold_object_score"], "Lowest (sum of part and connection scores) / parts "
                                               "of a kept person.", range=(0.0, None))

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.tick_on_message(self.edges)

    def tick(self):
        message = self.edges.read()
        connections = message.payload
        skeletons = paf.graph_matching(connections.parts, connections.kept_pairs(), connections.links,
                                       self.threshold_part_counter, self.threshold_object_score)
        self.skeletons.publish(SkeletonCandidates(skeletons, connections.parts, connections.pairs,
                                                  connections.heatmaps, connections.upsample,
                                                  connections.transform, connections.source, connections.frame),
                               acqtime=message.acqtime)
