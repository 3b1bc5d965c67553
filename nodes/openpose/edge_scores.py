"""openpose.EdgeScores — step 8: PAF line integral along every candidate connection."""
import numpy as np

from graphflow import NodeError, Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import EdgeList


class EdgeScores(_Step):
    """Step 8: sample the link's PAF (edge_sampling) at edge_sampling_steps points from a to b; the score
    is the mean of PAF·unit direction, and count the samples with PAF·direction ≥ threshold_sample_score."""

    candidates = Rx(EdgeList, "Candidate connections.", queue_size=2, policy="block")
    scored = Tx(EdgeList, "Candidates with score and count.")
    edges_paf = Param(list, list(paf.EDGES_PAF), "PAF plane of each link (channels 2p = x, 2p+1 = y).",
                      check=paf.check_planes)
    edge_sampling_steps = Param(int, paf.DEFAULTS["edge_sampling_steps"], "Samples along each candidate, ends included.", range=(2, 100))
    threshold_sample_score = Param(float, paf.DEFAULTS["threshold_sample_score"], "A sample passes when PAF·direction is at least this.",
                                   range=(-1.0, 1.0))
    edge_sampling = Param(str, paf.DEFAULTS["edge_sampling"], "Read the field bilinearly at a sample or at its nearest "
                                           "cell (faster; same AP on COCO val mini, loses short limbs "
                                           "on fields one cell wide).",
                          choices=["nearest", "bilinear"])

    def read_params(self):
        planes = np.array(self.edges_paf, np.int64)
        planes.setflags(write=False)  # unchanging: edge_scores checks its planes once, not every frame
        self._args = (planes, self.edge_sampling_steps, self.threshold_sample_score, self.edge_sampling)

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self.tick_on_message(self.candidates)

    def tick(self):
        message = self.candidates.read()
        candidates = message.payload
        try:
            scored = paf.edge_scores(candidates.pafs, candidates.parts, candidates.pairs, *self._args)
        except ValueError as exc:
            if not str(exc).startswith("edge_scores: "):
                raise
            raise NodeError(str(exc).removeprefix("edge_scores: ")) from None  # the params do not fit the maps
        self.scored.publish(EdgeList(scored, candidates.parts, candidates.links, candidates.heatmaps,
                                     candidates.pafs, None, candidates.upsample, candidates.transform,
                                     candidates.source, candidates.frame), acqtime=message.acqtime)
