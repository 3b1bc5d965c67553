"""Message types between the OpenPose decoding steps.

Each step's message carries its step function's result (a ``paf`` record) as it is, and a
reference to what later steps still need (the maps, the part list): nothing is copied or
converted along the chain. Coordinates are in map cells until step 12.
"""
from __future__ import annotations

import numpy as np

from graphflow import MessageType, field
from graphflow.packs.vision.messages import ImageTransform

from . import paf


class PoseMaps(MessageType, wire="openpose/PoseMaps"):
    """Part heatmaps and part affinity fields of one image, on the grid being decoded."""
    heatmaps: np.ndarray = field(doc="[18, H, W] float32 part confidence maps (background dropped).")
    pafs: np.ndarray = field(doc="[2L, H, W] float32 fields; channel 2k = x, 2k+1 = y of PAF plane k.")
    pooled: np.ndarray = field(doc="[18, H, W] max-pooled heatmaps (step 3).")
    upsample: int = field(1, doc="Factor the model's maps were upsampled by before decoding.")
    transform: ImageTransform = field(default_factory=ImageTransform, doc="Tensor pixel → original image pixel.")
    source: str = field("", doc="Where the image came from.")
    frame: int = field(0, doc="Frame index of the image.")


class PeakMap(MessageType, wire="openpose/PeakMap"):
    """Step 4: where the heatmaps have a local maximum."""
    maps: PoseMaps = field(doc="The maps the peaks were found in.")
    peaks: np.ndarray = field(doc="[18, H, W] bool, True at local maxima.")


class PeakList(MessageType, wire="openpose/PeakList"):
    """Steps 5-6: one entry per peak (part candidate)."""
    maps: PoseMaps = field(doc="The maps the peaks were found in.")
    peaks: paf.Peaks = field(doc="part [K] int32 part type; y, x [K] float32 row and column in map cells "
                                 "(sub-pixel); score [K] float32 heatmap confidence.")


class EdgeList(MessageType, wire="openpose/EdgeList"):
    """Steps 7-9: candidate connections between parts, one entry per (a, b) pair of a link."""
    parts: PeakList = field(doc="The part candidates that a and b index into.")
    links: list[list[int]] = field(doc="The link list (the edges param): [part_from, part_to] per link.")
    pairs: paf.Edges = field(doc="link [E] int32 index into links; a, b [E] int32 indices into parts.peaks; "
                                 "length [E] float32 a-b distance in map cells; score [E] float32 mean "
                                 "PAF·direction and count [E] int32 samples passing (step 8; null before).")
    kept: np.ndarray | None = field(None, doc="[E] bool, the pairs that passed step 9.")

    def kept_pairs(self) -> paf.Edges:
        """The pairs step 9 kept (all of them before step 9)."""
        if self.kept is None:
            return self.pairs
        return paf.Edges(*(None if values is None else values[self.kept] for values in self.pairs))


class SkeletonCandidates(MessageType, wire="openpose/SkeletonCandidates"):
    """Steps 10-11: people assembled from connections, in map cells."""
    connections: EdgeList = field(doc="The scored connections they were assembled from.")
    skeletons: paf.Skeletons = field(doc="parts [P, 18, 3] float32 x, y (map cells) and score, NaN/0 where "
                                         "missing; score [P] float32 person score; index [P, 18] int32 into "
                                         "the part list, -1 where missing; edge_score [P] float32 sum of the "
                                         "person's connection scores.")
