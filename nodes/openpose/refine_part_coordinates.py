"""openpose.RefinePartCoordinates — step 12: joint positions in original image pixels."""
import numpy as np

from graphflow import Param, Rx, Tx
from graphflow.packs.vision.messages import Skeleton2List

from . import paf
from ._step import _Step
from .messages import SkeletonCandidates


class RefinePartCoordinates(_Step):
    """Step 12: optionally re-refine joints to sub-pixel accuracy on the heatmaps, map cells to
    tensor pixels (pixel = cell · output_scale + offset), then tensor pixels to the original
    image through the encoder's recorded scale and padding."""

    skeletons = Rx(SkeletonCandidates, "People in map cells.", queue_size=2, policy="block")
    skeletons_out = Tx(Skeleton2List, "People in original image pixels, best first.")
    refine_parts_coordinates = Param(bool, paf.DEFAULTS["refine_parts_coordinates"], "Recompute sub-pixel positions from the heatmaps "
                                                  "(only useful when step 5 ran with refine 'none').")
    output_scale = Param(float, paf.DEFAULTS["output_scale"], "Tensor pixels per map cell of the model (its stride).", range=(0.0, None))
    offset = Param(float, paf.DEFAULTS["offset"], "Tensor pixel of map cell 0; null = 0.35 · output_scale (the measured "
                                "bias of this model's keypoints; the geometric centre would be 3.5).")
    max_people = Param(int, paf.DEFAULTS["max_people"], "Keep only the best this many people; 0 keeps everyone (no cap).",
                       range=(0, None))
    labels = Param(list, list(paf.PART_NAMES), "Joint names, in part order.")
    draw_edges = Param(list, [list(e) for e in paf.EDGES[:17]],
                       "Joint pairs a viewer draws as limbs (the ear-shoulder links are left out).",
                       check=paf.check_links)

    def read_params(self):
        self._refine = self.refine_parts_coordinates
        self._grid = self.output_scale, self.offset
        self._max_people = self.max_people
        self._names = self.labels, self.draw_edges

    def start(self):
        self.read_params()
        self.tick_on_message(self.skeletons)

    def tick(self):
        message = self.skeletons.read()
        candidates = message.payload
        transform = candidates.transform
        scale, offset = paf.grid_scale_offset(*self._grid, candidates.upsample)
        scale, offset = paf.compose_image_mapping(scale, offset, (transform.scale_y, transform.scale_x),
                                                  (transform.offset_y, transform.offset_x))
        refined = paf.refine_part_coordinates(candidates.skeletons, self._refine, scale, offset,
                                              candidates.heatmaps, max_people=self._max_people)
        joints = refined.parts  # a fresh array: refine_part_coordinates copies
        joints[refined.index < 0] = 0.0  # Skeleton2List convention: score 0 = not found
        self.skeletons_out.publish(Skeleton2List(
            joints.astype(np.float32, copy=False), refined.score.astype(np.float32, copy=False),
            *self._names, candidates.source, candidates.frame,
            transform.image_width, transform.image_height), acqtime=message.acqtime)
