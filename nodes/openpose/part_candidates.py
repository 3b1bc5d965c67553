"""openpose.PartCandidates — step 6: keep the peaks confident enough to be parts."""
from graphflow import Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import PeakList


class PartCandidates(_Step):
    """Step 6: keep peak candidates whose confidence is at least threshold_heatmap."""

    peaks = Rx(PeakList, "Every peak.", queue_size=2, policy="block")
    parts = Tx(PeakList, "Peaks with score ≥ threshold_heatmap.")
    threshold_heatmap = Param(float, paf.DEFAULTS["threshold_heatmap"], "Peaks below this confidence are discarded: raise it for "
                                           "fewer false parts, lower it for fewer missed joints.",
                              range=(0.0, 1.0))

    def read_params(self):
        self._threshold = self.threshold_heatmap

    def start(self):
        self.read_params()
        self.tick_on_message(self.peaks)

    def tick(self):
        message = self.peaks.read()
        peaks = message.payload
        parts = paf.part_candidates(peaks.peaks, self._threshold)
        self.parts.publish(PeakList(parts, peaks.heatmaps, peaks.pafs, peaks.upsample, peaks.transform,
                                    peaks.source, peaks.frame), acqtime=message.acqtime)
