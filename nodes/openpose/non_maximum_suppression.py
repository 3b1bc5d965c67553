"""openpose.NonMaximumSuppression — step 4: keep the cells that are their window's maximum."""
from graphflow import Param, Rx, Tx

from . import paf
from ._step import _Step
from .messages import PeakMap, PoseMaps


class NonMaximumSuppression(_Step):
    """Step 4: a cell is a peak where it equals the pooled heatmap (ties keep one cell)."""

    pooled = Rx(PoseMaps, "Heatmaps with their pooled version.", queue_size=2, policy="block")
    peak_map = Tx(PeakMap, "Boolean map of local maxima.")
    threshold = Param(float, paf.DEFAULTS["threshold_heatmap"], "Noise floor: cells below it are never peaks. Only prunes work "
                                   "early; keep it at or below threshold_heatmap.", range=(0.0, 1.0))

    def read_params(self):
        self._threshold = self.threshold

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self.tick_on_message(self.pooled)

    def tick(self):
        message = self.pooled.read()
        maps = message.payload
        peaks = paf.non_maximum_suppression(maps.heatmaps, maps.pooled, self._threshold)
        self.peak_map.publish(PeakMap(peaks, maps.heatmaps, maps.pafs, maps.upsample, maps.transform,
                                      maps.source, maps.frame), acqtime=message.acqtime)
