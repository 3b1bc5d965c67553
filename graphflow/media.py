"""Image and video files as graphflow writes them (``graphflow export`` and the viz pack's writer).

OpenCV is imported on first use. Its ``imwrite`` and ``VideoWriter`` take a path as text, and
crash the process on one that is not valid UTF-8 (a file name of undecodable bytes): images are
encoded in memory and written by Python instead, and a video's path must be valid UTF-8.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

# FFmpeg's MPEG-4 encoder takes a frame rate whose time base fits 16 bits: 84.219 frames/s
# (time base 1000/84219) is refused where 84.22 (50/4211) is not.
MAX_TIME_BASE = 65535
MIN_VIDEO_FPS = 0.01  # below this OpenCV's writers refuse (measured: 0.005 opens, 0.001 does not)


def safe_stem(name: str) -> str:
    """A file name's stem as valid UTF-8 text: bytes a file system name may hold that are not
    UTF-8 (Python's surrogate escapes) become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def write_image(path: Path, pixels, params=()) -> None:
    """Encode ``pixels`` in the format of ``path``'s suffix and write the file; OSError (with
    the reason) when it cannot be encoded or written."""
    import cv2

    ok, data = cv2.imencode(path.suffix or ".png", pixels, list(params))
    if not ok:
        raise OSError(f"cannot encode an image of shape {pixels.shape} as {path.suffix}")
    with open(path, "wb") as f:
        f.write(data)


def encodable_fps(fps: float) -> float:
    """``fps`` rounded so that every video encoder OpenCV uses takes it (to 1/100 frame/s, or to
    a whole number where that is finer than the time base allows)."""
    fraction = Fraction(round(fps * 100), 100)
    if fraction.numerator > MAX_TIME_BASE:
        fraction = Fraction(round(fps))
    return float(fraction)


def open_video(path: Path, codec: str, fps: float, size: tuple[int, int]):
    """An opened ``cv2.VideoWriter``; OSError saying why when it cannot open."""
    import cv2

    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OSError(f"cannot write a video to {text!r}: the path is not valid UTF-8") from None
    if fps < MIN_VIDEO_FPS:
        raise OSError(f"cannot write a video at {fps:g} frames/s (at least {MIN_VIDEO_FPS:g})")
    writer = cv2.VideoWriter(text, cv2.VideoWriter_fourcc(*codec), encodable_fps(fps), size)
    if not writer.isOpened():
        reason = "its folder does not exist" if not path.parent.is_dir() else \
            f"OpenCV has no {codec} encoder, or cannot write there"
        raise OSError(f"cannot write video {path} ({reason})")
    return writer
