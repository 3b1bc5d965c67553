"""Nodes of the viewer test app. Deterministic, cheap, and shaped like the real pose pipeline."""
from __future__ import annotations

import numpy as np

from graphflow import Codelet, Param, Period, Rx, Tx
from graphflow.packs.vision.messages import Image, ImageTransform, Skeleton2List, Tensors

# Five joints, as fractions of the image size, with fixed confidences: a threshold t keeps the
# joints whose score >= t (score 0 = not found), so threshold 0.5 → 3 joints, 0.8 → 2.
LABELS = ["head", "neck", "hip", "left_foot", "right_foot"]
POSITIONS = np.array([[0.50, 0.30], [0.50, 0.42], [0.50, 0.62], [0.40, 0.85], [0.60, 0.85]], np.float32)
SCORES = np.array([0.95, 0.90, 0.70, 0.45, 0.30], np.float32)
EDGES = [[0, 1], [1, 2], [2, 3], [2, 4]]


def load_image(path: str) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        pixels = cv2.imread(path, cv2.IMREAD_COLOR)
        if pixels is None:
            raise FileNotFoundError(f"cannot read image {path}")
        return pixels
    raise RuntimeError("viewer_testpack.ImageSource needs opencv to read images")


class ImageSource(Codelet):
    """Publishes the same picture (loaded once) every tick, numbered by frame."""

    image = Tx(Image, "The picture.")
    path = Param(str, doc="Image file to publish.")
    tick_period = Param(Period, "10Hz", "How often to publish.")
    count = Param(int, 0, "How many frames; 0 = forever.", range=(0, None))

    def start(self):
        self.pixels = load_image(self.path)
        self.sent = 0
        self.tick_periodically(self.tick_period)

    def tick(self):
        self.image.publish(Image(pixels=self.pixels, color_order="bgr", source=self.path, frame=self.sent))
        self.sent += 1
        if self.count and self.sent >= self.count:
            self.report_exhausted()


class FakePose(Codelet):
    """One person whose joints sit at fixed places of the image; joints scoring below
    `threshold` are reported as not found (score 0)."""

    image = Rx(Image, "Pictures to find people in.")
    skeletons = Tx(Skeleton2List, "The person found, in image pixels.")
    threshold = Param(float, 0.5, "Lowest joint score kept.", range=(0.0, 1.0))

    def start(self):
        self.tick_on_message(self.image)

    def tick(self):
        message = self.image.read_latest()
        pixels = message.payload.pixels
        h, w = pixels.shape[:2]
        # a little real work: the mean brightness around each joint scales nothing, but costs
        # what a cheap detector would
        grey = pixels[::8, ::8].mean(axis=-1) if pixels.ndim == 3 else pixels[::8, ::8]
        keep = SCORES >= self.threshold
        joints = np.zeros((1, len(LABELS), 3), np.float32)
        joints[0, :, 0] = POSITIONS[:, 0] * w
        joints[0, :, 1] = POSITIONS[:, 1] * h
        joints[0, :, 2] = SCORES
        joints[0, ~keep] = 0.0
        score = float(SCORES[keep].mean()) if keep.any() else 0.0
        self.skeletons.publish(Skeleton2List(joints=joints, scores=np.array([score * (grey.size > 0)], np.float32),
                                             labels=list(LABELS), edges=[list(e) for e in EDGES],
                                             source=message.payload.source, frame=message.payload.frame,
                                             image_width=w, image_height=h), acqtime=message.acqtime)


class FakeHeatmaps(Codelet):
    """Part-confidence-like maps: a float32 [channels, 46, 54] tensor, channel c a Gaussian blob
    whose centre moves with c, on a faint copy of the downscaled image."""

    image = Rx(Image, "Pictures.")
    tensors = Tx(Tensors, "One tensor named 'heatmaps'.")
    channels = Param(int, 19, "Number of maps.", range=(1, 64))

    def start(self):
        self.tick_on_message(self.image)
        ys, xs = np.mgrid[0:46, 0:54].astype(np.float32)
        centres = [(3 + (c * 7) % 48, 3 + (c * 5) % 40) for c in range(self.channels)]
        self.blobs = np.stack([np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 18.0) for cx, cy in centres]).astype(np.float32)

    def tick(self):
        message = self.image.read_latest()
        pixels = message.payload.pixels
        h, w = pixels.shape[:2]
        grey = pixels[:: max(1, h // 46), :: max(1, w // 54)].mean(axis=-1)[:46, :54].astype(np.float32) / 2550.0
        maps = self.blobs.copy()
        maps[:, : grey.shape[0], : grey.shape[1]] += grey
        transform = ImageTransform(scale_x=w / 54, scale_y=h / 46, image_width=w, image_height=h)
        self.tensors.publish(Tensors(names=["heatmaps"], tensors=[maps], transform=transform,
                                     source=message.payload.source, frame=message.payload.frame),
                             acqtime=message.acqtime)
