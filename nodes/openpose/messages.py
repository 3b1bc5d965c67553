"""Message types between the OpenPose decoding steps.

Each step's message keeps a reference to what later steps still need (the maps, the part
list), so nothing is copied along the chain. Coordinates are in map cells until step 12.
"""
from __future__ import annotations

import numpy as np

from graphflow import MessageType, field
from nodes.vision.messages import ImageTransform

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
    part: np.ndarray = field(doc="[K] int32 part type.")
    y: np.ndarray = field(doc="[K] float32 row in map cells (sub-pixel).")
    x: np.ndarray = field(doc="[K] float32 column in map cells (sub-pixel).")
    score: np.ndarray = field(doc="[K] float32 heatmap confidence.")

    def as_peaks(self) -> paf.Peaks:
        return paf.Peaks(self.part, self.y, self.x, self.score)

    @classmethod
    def of(cls, maps: PoseMaps, peaks: paf.Peaks) -> "PeakList":
        return cls(maps, peaks.part, peaks.y, peaks.x, peaks.score)


class EdgeList(MessageType, wire="openpose/EdgeList"):
    """Steps 7-9: candidate connections between parts, one entry per (a, b) pair of a link."""
    parts: PeakList = field(doc="The part candidates that a and b index into.")
    edges: list[list[int]] = field(doc="The link list: [part_from, part_to] per link.")
    link: np.ndarray = field(doc="[E] int32 link index into edges.")
    a: np.ndarray = field(doc="[E] int32 index of the link's first part in parts.")
    b: np.ndarray = field(doc="[E] int32 index of the link's second part in parts.")
    length: np.ndarray = field(doc="[E] float32 distance a-b in map cells.")
    score: np.ndarray | None = field(None, doc="[E] float32 mean PAF·direction (step 8).")
    count: np.ndarray | None = field(None, doc="[E] int32 samples passing the sample threshold (step 8).")
    kept: np.ndarray | None = field(None, doc="[E] bool, connections that passed step 9.")

    def as_edges(self, only_kept: bool = False) -> paf.Edges:
        edges = paf.Edges(self.link, self.a, self.b, self.length, self.score, self.count)
        if only_kept and self.kept is not None:
            edges = paf.Edges(*(None if v is None else v[self.kept] for v in edges))
        return edges


class SkeletonCandidates(MessageType, wire="openpose/SkeletonCandidates"):
    """Steps 10-11: people assembled from connections, in map cells."""
    connections: EdgeList = field(doc="The scored connections they were assembled from.")
    joints: np.ndarray = field(doc="[P, 18, 3] float32 x, y (map cells) and score; NaN/0 where missing.")
    scores: np.ndarray = field(doc="[P] float32 person score.")
    index: np.ndarray = field(doc="[P, 18] int32 index into the part list, -1 where missing.")
    edge_score: np.ndarray = field(doc="[P] float32 sum of the person's connection scores.")

    def as_skeletons(self) -> paf.Skeletons:
        return paf.Skeletons(self.joints, self.scores, self.index, self.edge_score)

    @classmethod
    def of(cls, connections: EdgeList, skeletons: paf.Skeletons) -> "SkeletonCandidates":
        return cls(connections, skeletons.parts, skeletons.score, skeletons.index, skeletons.edge_score)
