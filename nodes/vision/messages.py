"""Standard vision message types. Viewers draw them by their ``render`` hint:
``image`` (field ``pixels``) and ``skeleton2`` (fields ``joints``, ``edges``, ``labels``)."""
from __future__ import annotations

import numpy as np

from graphflow import MessageType, field


class Image(MessageType, wire="vision/Image", render="image"):
    """One picture, as loaded or captured."""
    pixels: np.ndarray = field(doc="H×W×3 uint8 pixels (or H×W for grey).")
    color_order: str = field("bgr", doc="Channel order of pixels: 'bgr' or 'rgb'.")
    source: str = field("", doc="Where it came from: a file path, 'camera:0', a video path.")
    frame: int = field(0, doc="Index of this image in its source (0-based).")
    fps: float = field(0.0, doc="Frame rate of its source (a video or camera); 0 = not a video or unknown.")


class ImageTransform(MessageType, wire="vision/ImageTransform"):
    """How tensor pixel coordinates map back to the original image:
    x_image = x_tensor * scale_x + offset_x, and the same for y. Pixel centres are at integer
    coordinates in both (so a plain resize by s has offset (s - 1) / 2)."""
    scale_x: float = field(1.0, doc="Original image pixels per tensor pixel, horizontally.")
    scale_y: float = field(1.0, doc="Original image pixels per tensor pixel, vertically.")
    offset_x: float = field(0.0, doc="Added after scaling (undoes left padding).")
    offset_y: float = field(0.0, doc="Added after scaling (undoes top padding).")
    image_width: int = field(0, doc="Width of the original image.")
    image_height: int = field(0, doc="Height of the original image.")

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Map an [..., 2] array of tensor (x, y) pixel coordinates to original image pixels."""
        return xy * np.array([self.scale_x, self.scale_y]) + np.array([self.offset_x, self.offset_y])


class Tensors(MessageType, wire="vision/Tensors"):
    """Named tensors, e.g. a model's input or outputs, with the image they came from."""
    names: list[str] = field(doc="One name per tensor.")
    tensors: list[np.ndarray] = field(doc="The arrays (numpy; CuPy inside a GPU process).")
    transform: ImageTransform = field(default_factory=ImageTransform,
                                      doc="Tensor pixel → original image pixel mapping.")
    source: str = field("", doc="The source of the image they came from.")
    frame: int = field(0, doc="The frame index of that image.")

    def get(self, name: str) -> np.ndarray:
        try:
            return self.tensors[self.names.index(name)]
        except ValueError:
            raise KeyError(f"no tensor {name!r} (have: {self.names})") from None


class Skeleton2List(MessageType, wire="vision/Skeleton2List", render="skeleton2"):
    """Detected objects as 2-D skeletons: labelled joints joined by edges."""
    joints: np.ndarray = field(doc="[P, J, 3] float32: x, y (image pixels) and score per joint; score 0 = not found.")
    scores: np.ndarray = field(doc="[P] float32 score of each object.")
    labels: list[str] = field(default_factory=list, doc="J joint names.")
    edges: list[list[int]] = field(default_factory=list, doc="Joint index pairs to draw as limbs.")
    source: str = field("", doc="The source of the image they were found in.")
    frame: int = field(0, doc="The frame index of that image.")
    image_width: int = field(0, doc="Width of that image.")
    image_height: int = field(0, doc="Height of that image.")
