"""Message types between the OpenPose decoding steps.

Messages are flat: each carries its own fields, never the message it was derived from. A step
passes on, by reference, what later steps still need (the maps, the part list, the image's
transform and identity) next to its own result (a ``paf`` record, as its step function returned
it): nothing is copied or converted along the chain. Coordinates are in map cells until step 12.
"""
from __future__ import annotations

import numpy as np

from graphflow import MessageType, field
from graphflow.packs.vision.messages import ImageTransform

from . import paf

_HEATMAPS = "[18, H, W] float32 part confidence maps (background dropped), on the grid being decoded."
_PAFS = "[2L, H, W] float32 part affinity fields; channel 2k = x, 2k+1 = y of PAF plane k."
_PARTS = ("part [K] int32 part type; y, x [K] float32 row and column in map cells (sub-pixel); "
          "score [K] float32 heatmap confidence.")
_PAIRS = ("link [E] int32 index into links; a, b [E] int32 indices into parts; length [E] float32 a-b "
          "distance in map cells; score [E] float32 mean PAF·direction and count [E] int32 samples "
          "passing (step 8; null before).")
_UPSAMPLE = "Factor the model's maps were upsampled by before decoding."
_TRANSFORM = "Tensor pixel → original image pixel."
_SOURCE = "Where the image came from."
_FRAME = "Frame index of the image."


class PoseMaps(MessageType, wire="openpose/PoseMaps"):
    """Part heatmaps and part affinity fields of one image, on the grid being decoded."""
    heatmaps: np.ndarray = field(doc=_HEATMAPS)
    pafs: np.ndarray = field(doc=_PAFS)
    pooled: np.ndarray = field(doc="[18, H, W] max-pooled heatmaps (step 3).")
    upsample: int = field(1, doc=_UPSAMPLE)
    transform: ImageTransform = field(default_factory=ImageTransform, doc=_TRANSFORM)
    source: str = field("", doc=_SOURCE)
    frame: int = field(0, doc=_FRAME)


class PeakMap(MessageType, wire="openpose/PeakMap"):
    """Step 4: where the heatmaps have a local maximum."""
    peaks: np.ndarray = field(doc="[18, H, W] bool, True at local maxima.")
    heatmaps: np.ndarray = field(doc=_HEATMAPS)
    pafs: np.ndarray = field(doc=_PAFS)
    upsample: int = field(1, doc=_UPSAMPLE)
    transform: ImageTransform = field(default_factory=ImageTransform, doc=_TRANSFORM)
    source: str = field("", doc=_SOURCE)
    frame: int = field(0, doc=_FRAME)


class PeakList(MessageType, wire="openpose/PeakList"):
    """Steps 5-6: one entry per peak (part candidate)."""
    peaks: paf.Peaks = field(doc=_PARTS)
    heatmaps: np.ndarray = field(doc=_HEATMAPS)
    pafs: np.ndarray = field(doc=_PAFS)
    upsample: int = field(1, doc=_UPSAMPLE)
    transform: ImageTransform = field(default_factory=ImageTransform, doc=_TRANSFORM)
    source: str = field("", doc=_SOURCE)
    frame: int = field(0, doc=_FRAME)


class EdgeList(MessageType, wire="openpose/EdgeList"):
    """Steps 7-9: candidate connections between parts, one entry per (a, b) pair of a link."""
    pairs: paf.Edges = field(doc=_PAIRS)
    parts: paf.Peaks = field(doc="The part candidates that a and b index into: " + _PARTS)
    links: list[list[int]] = field(doc="The link list (the edges param): [part_from, part_to] per link.")
    heatmaps: np.ndarray = field(doc=_HEATMAPS)
    pafs: np.ndarray = field(doc=_PAFS)
    kept: paf.Edges | None = field(None, doc="The pairs that passed step 9 (null before), a subset of pairs "
                                             "with the same fields; pairs keeps every scored one for step 11.")
    upsample: int = field(1, doc=_UPSAMPLE)
    transform: ImageTransform = field(default_factory=ImageTransform, doc=_TRANSFORM)
    source: str = field("", doc=_SOURCE)
    frame: int = field(0, doc=_FRAME)

    def kept_pairs(self) -> paf.Edges:
        """The pairs step 9 kept (all of them before step 9)."""
        return self.pairs if self.kept is None else self.kept


class SkeletonCandidates(MessageType, wire="openpose/SkeletonCandidates"):
    """Steps 10-11: people assembled from connections, in map cells."""
    skeletons: paf.Skeletons = field(doc="parts [P, 18, 3] float32 x, y (map cells) and score, NaN/0 where "
                                         "missing; score [P] float32 person score; index [P, 18] int32 into "
                                         "parts, -1 where missing; edge_score [P] float32 sum of the "
                                         "person's connection scores.")
    parts: paf.Peaks = field(doc="The part candidates the skeletons index into: " + _PARTS)
    pairs: paf.Edges = field(doc="Every scored pair, kept by step 9 or not (step 11 rejoins split people "
                                 "with them): " + _PAIRS)
    heatmaps: np.ndarray = field(doc=_HEATMAPS)
    upsample: int = field(1, doc=_UPSAMPLE)
    transform: ImageTransform = field(default_factory=ImageTransform, doc=_TRANSFORM)
    source: str = field("", doc=_SOURCE)
    frame: int = field(0, doc=_FRAME)
