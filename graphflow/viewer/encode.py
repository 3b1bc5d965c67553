"""Turning messages into what a browser can show: JPEG/PNG images scaled to a window, heatmaps
of float tensors, JSON summaries for the inspector, scalar fields for plots, skeletons for
overlays. Runs on the viewer's thread, never on the graph's."""
from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from typing import Any

import numpy as np

try:  # opencv is in the "cpu" extra; without it images go out as PNG, scaled by striding
    import cv2
except ImportError:  # pragma: no cover - exercised where opencv is absent
    cv2 = None

from ..messages import Message, MessageType, is_record

SMALL_ARRAY = 64     # arrays (and lists) up to this many items are sent in full
HEATMAP_MAX_SIDE = 512


# -- JSON ------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def dumps(value: Any) -> str:
    """JSON that browsers parse: no NaN/Infinity (written as strings), numpy made plain."""
    try:
        return json.dumps(value, default=_default, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(json.loads(json.dumps(value, default=_default))),
                          default=_default, separators=(",", ":"))


# -- images ------------------------------------------------------------------------------------
def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """H×W, H×W×1, H×W×3 or H×W×4 of any numeric dtype → uint8 H×W or H×W×3."""
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"not an image: shape {list(np.shape(pixels))}")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    return array


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Largest size within max_width × max_height keeping the aspect ratio; never upscales."""
    scale = min(1.0, max_width / max(width, 1), max_height / max(height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = array.shape[:2]
    if (w, h) == (width, height):
        return array
    if cv2 is not None:
        if width * 2 <= w and height * 2 <= h:
            # area-average quality at a third of INTER_AREA's cost: linear to twice the size,
            # then an exact 2:1 area step (OpenCV's fast path)
            array = cv2.resize(array, (width * 2, height * 2), interpolation=cv2.INTER_LINEAR)
            return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA)
        return cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    ys = (np.arange(height) * h // height).clip(0, h - 1)
    xs = (np.arange(width) * w // width).clip(0, w - 1)
    return array[ys][:, xs]


def png(array: np.ndarray) -> bytes:
    """PNG of a uint8 H×W (grey) or H×W×3 (RGB) array, with zlib only."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    raw = np.zeros((h, 1 + w * channels), dtype=np.uint8)
    raw[:, 1:] = array.reshape(h, w * channels)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def encode_image(pixels: np.ndarray, color_order: str, max_width: int, max_height: int,
                 quality: int = 80) -> tuple[bytes, str, int, int]:
    """Scale into max_width × max_height and compress: (bytes, mime, width, height).
    JPEG through OpenCV when available, else PNG."""
    array = to_uint8(pixels)
    h, w = array.shape[:2]
    width, height = fit_size(w, h, max_width, max_height)
    array = resize(array, width, height)
    if cv2 is not None:
        if array.ndim == 3 and color_order == "rgb":
            array = array[:, :, ::-1]
        ok, data = cv2.imencode(".jpg", array, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
        if ok:
            return data.tobytes(), "image/jpeg", width, height
    if array.ndim == 3 and color_order != "rgb":
        array = array[:, :, ::-1]
    return png(array), "image/png", width, height


# -- heatmaps ----------------------------------------------------------------------------------
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
COLORMAP = np.stack([np.interp(np.linspace(0, len(_ANCHORS) - 1, 256), np.arange(len(_ANCHORS)), _ANCHORS[:, c])
                     for c in range(3)], axis=1).astype(np.uint8)  # viridis-like, dark → yellow


def _drop_batch(array: np.ndarray) -> np.ndarray:
    """Leading axes of size 1 above three dimensions (a model's batch: [1, 19, 46, 54]) dropped."""
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    return array


def heatmap_able(array: Any) -> bool:
    return (isinstance(array, np.ndarray) and _drop_batch(array).ndim in (2, 3) and array.dtype.kind == "f"
            and array.size > 0)


def heatmap(array: np.ndarray, index: int = 0) -> tuple[bytes, dict]:
    """PNG of a 2-D float tensor, or of channel ``index`` (axis 0) of a 3-D one (leading batch
    axes of size 1 ignored: [1, C, H, W] is C maps), colour-mapped from its min (dark) to its max
    (yellow); returns (png, info)."""
    if not heatmap_able(array):
        got = f"{array.dtype} {list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"a heatmap needs a 2-D or 3-D float tensor, got {got}")
    array = _drop_batch(array)
    channels = array.shape[0] if array.ndim == 3 else 1
    if array.ndim == 3:
        if not 0 <= index < channels:
            raise ValueError(f"channel index {index} is out of range [0, {channels - 1}]")
        plane = array[index]
    else:
        plane = array
    step = max(1, math.ceil(max(plane.shape) / HEATMAP_MAX_SIDE))
    plane = np.nan_to_num(np.asarray(plane[::step, ::step], dtype=np.float32))
    low, high = float(plane.min()), float(plane.max())
    scaled = (plane - low) / (high - low) if high > low else np.zeros_like(plane)
    rgb = COLORMAP[(scaled * 255).astype(np.uint8)]
    return png(rgb), {"min": low, "max": high, "index": index, "channels": channels,
                      "width": int(plane.shape[1]), "height": int(plane.shape[0])}


def resolve(payload: Any, path: str) -> Any:
    """Follow a dotted field path ("tensors.0", "transform.scale_x") into a payload."""
    value = payload
    for part in [p for p in path.split(".") if p]:
        if is_record(value) and part in value._fields:
            value = getattr(value, part)
        elif isinstance(value, (list, tuple)):
            try:
                index = int(part)
                if index < 0:  # not Python's from-the-end: a path names an item by its place
                    raise IndexError(index)
                value = value[index]
            except (ValueError, IndexError):
                raise KeyError(f"no item {part!r} in {path!r}") from None
        elif isinstance(value, dict):
            if part not in value:
                raise KeyError(f"no key {part!r} in {path!r}")
            value = value[part]
        elif dataclasses.is_dataclass(value) and part in {f.name for f in dataclasses.fields(value)}:
            value = getattr(value, part)
        else:
            raise KeyError(f"no field {part!r} in {path!r}")
    return value


# -- inspector ---------------------------------------------------------------------------------
def _stat(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def describe_value(value: Any, path: str = "", depth: int = 0) -> dict:
    """What the inspector shows for one payload value."""
    if isinstance(value, np.ndarray):
        out = {"kind": "tensor", "path": path, "shape": list(value.shape), "dtype": str(value.dtype)}
        if value.size and value.dtype.kind in "biuf":
            finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
            if finite.size:
                out.update(min=_stat(finite.min()), max=_stat(finite.max()), mean=_stat(finite.mean(dtype=np.float64)))
        if value.size <= SMALL_ARRAY:
            out["values"] = value.tolist()
        out["heatmap"] = heatmap_able(value)
        return out
    if isinstance(value, MessageType) or is_record(value):
        return {"kind": "message", "path": path,
                "type": value.wire_name if isinstance(value, MessageType) else type(value).__name__,
                "fields": {name: describe_value(item, _join(path, name), depth + 1)
                           for name, item in _named_items(value) or []}}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float, str, bool, type(None))) for v in value) and len(value) <= SMALL_ARRAY:
            return {"kind": "list", "path": path, "length": len(value), "values": list(value)}
        if all(isinstance(v, (list, tuple)) and len(v) <= 8 and all(isinstance(x, (int, float)) for x in v)
               for v in value) and len(value) <= SMALL_ARRAY:
            return {"kind": "list", "path": path, "length": len(value), "values": [list(v) for v in value]}
        shown = value[:16] if depth < 4 else []
        return {"kind": "list", "path": path, "length": len(value),
                "items": [describe_value(v, _join(path, str(i)), depth + 1) for i, v in enumerate(shown)]}
    if isinstance(value, dict):
        return {"kind": "dict", "path": path, "length": len(value),
                "items": {str(k): describe_value(v, _join(path, str(k)), depth + 1)
                          for k, v in list(value.items())[:32]} if depth < 4 else {}}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and len(value) > 500:
        value = value[:500] + "…"
    if isinstance(value, (bytes, bytearray)):
        value = f"<{len(value)} bytes>"
    return {"kind": "scalar", "path": path, "value": value}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def inspect_message(message: Message, now: float | None = None) -> dict:
    header = message.header
    out = {"type": message.payload.wire_name, "render": type(message.payload).render,
           "header": {"uuid": header.uuid, "acqtime": header.acqtime, "pubtime": header.pubtime,
                      "latency_ms": (header.pubtime - header.acqtime) * 1e3}}
    if now is not None:
        out["header"]["age_ms"] = (now - header.acqtime) * 1e3
    out["payload"] = {f.name: describe_value(getattr(message.payload, f.name), f.name)
                      for f in dataclasses.fields(message.payload)}
    return out


# -- plots -------------------------------------------------------------------------------------
def scalars(payload: Any, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Every number a payload carries (nested messages and records flattened with dots), plus the
    length of each list/array as ``field#len``."""
    out: dict[str, float] = {}
    items = _named_items(payload)
    if items is None or depth > 3:
        return out
    for field_name, value in items:
        name = _join(prefix, field_name)
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            value = float(value)
            if math.isfinite(value):
                out[name] = value
        elif isinstance(value, np.ndarray):
            if value.size == 1 and value.dtype.kind in "biuf":
                out[name] = float(value.reshape(-1)[0])
            elif value.ndim:
                out[name + "#len"] = float(value.shape[0])
        elif _named_items(value) is not None:
            out.update(scalars(value, name, depth + 1))
        elif isinstance(value, (list, tuple)):
            out[name + "#len"] = float(len(value))
    return out


def _named_items(value: Any) -> list[tuple[str, Any]] | None:
    """(name, value) of each field of a payload or record; None for anything else."""
    if is_record(value):
        return list(zip(value._fields, value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    return None


# -- overlays ----------------------------------------------------------------------------------
def skeletons(message: Message) -> dict:
    """A skeleton2 message as the 2-D renderer draws it."""
    p = message.payload
    joints = np.asarray(getattr(p, "joints", np.zeros((0, 0, 3))), dtype=np.float32)
    if joints.ndim != 3 or joints.shape[-1] < 3:
        joints = joints.reshape(0, 0, 3)
    return {"joints": np.round(joints[..., :3], 2).tolist(),
            "scores": np.asarray(getattr(p, "scores", []), dtype=np.float32).round(3).tolist(),
            "labels": list(getattr(p, "labels", [])), "edges": [list(e) for e in getattr(p, "edges", [])],
            "image_width": int(getattr(p, "image_width", 0) or 0),
            "image_height": int(getattr(p, "image_height", 0) or 0)}
