"""viz.ImageWriter — writes every image it receives to a folder, or all of them to one video.

File names: `<source stem>.<format>`; frames of a camera, and a source seen again, get
`<source stem>_<frame:06d>.<format>` (and `_2`, `_3` ... where even that name was written in this
run: two inputs never share an output). Bytes of a file name that are not UTF-8 become U+FFFD.
Video: with `video` "auto" (default), the frames of each video file go into a video of their
own, `folder/<source stem>.mp4` (the first one named `video_filename` where set); "always" puts
every image into one video, "never" writes every frame as a file. A file is never written over
the input it was read from (the app stops, saying so: the output folder is the input's). Codec
from the file extension: mp4v for .mp4, MJPG for .avi; images of another size are resized to the first one's.
The video plays at its input's frame rate (the images' `fps`, from the loader: a 10 fps input
gives a 10 fps output), or `video_fps` where set, or 30 for still images. Timestamps are kept:
frame k of the output shows input frame k, so where frames of a video went missing on the way
(a dropping queue upstream), the frame before is repeated in their place (at most
MAX_REPEATED_FRAMES at a time). Nothing is kept per image: memory stays flat over a run.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphflow import Codelet, NodeError, Param, Rx
from graphflow.files import resuming
from graphflow.media import MIN_VIDEO_FPS, open_video, safe_stem, write_image
from graphflow.packs.io.image_loader import is_video_source
from graphflow.packs.vision.messages import Image
from graphflow.packs.vision.opencv import cv2

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
STILL_IMAGES_FPS = 30.0
MAX_REPEATED_FRAMES = 1000  # a larger jump in frame numbers is a new start, not frames lost


def image_file_name(source: str, frame: int, extension: str, seen: set[str]) -> str:
    """``<stem>.<ext>`` for a still image seen once, else ``<stem>_<frame:06d>.<ext>``, then
    ``_2``, ``_3`` ... past the names in ``seen``. ``seen`` holds the still images' names (frames of
    videos and cameras are numbered, never remembered: memory stays flat)."""
    stem = safe_stem(Path(source.replace(":", "_")).stem) or "image"
    numbered = f"{stem}_{frame:06d}"
    if is_video_source(source):
        name = f"{numbered}.{extension}"
        return name if name not in seen else _unused(numbered, extension, seen)
    name = f"{stem}.{extension}"
    if name in seen:
        name = f"{numbered}.{extension}"
    if name in seen:
        name = _unused(numbered, extension, seen)
    seen.add(name)
    return name


def _unused(stem: str, extension: str, seen: set[str]) -> str:
    number = 2
    while f"{stem}_{number}.{extension}" in seen:
        number += 1
    return f"{stem}_{number}.{extension}"


def bgr_pixels(image: Image) -> np.ndarray:
    pixels = image.pixels
    if pixels.ndim == 3 and image.color_order.lower() == "rgb":
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return pixels


class ImageWriter(Codelet):
    """Writes images to `folder` as files named after their source, or into one video."""

    image = Rx(Image, "Images to write.", queue_size=16, policy="block")
    folder = Param(str, "out/images", "Output folder (created).", live=False)
    format = Param(str, "jpg", "Image file format.", choices=["jpg", "png"])
    jpeg_quality = Param(int, 95, "JPEG quality, 0..100.", range=(0, 100))
    video = Param(str, "auto", "auto: frames of a video file go into one video; always: every image; "
                               "never: image files only.", choices=["auto", "always", "never"])
    video_filename = Param(str, "", "Video file name inside folder (.mp4 or .avi); empty = <source stem>.mp4. "
                                    "In auto mode it names the first input video's output.")
    video_fps = Param(float, 0.0, "Frames per second of the video; 0 = the input's frame rate "
                                  f"({STILL_IMAGES_FPS:g} for still images).", range=(0.0, 10_000.0))

    def start(self):
        if self.video_filename and (Path(self.video_filename).name != self.video_filename
                                    or Path(self.video_filename).suffix.lower() not in FOURCC):
            raise NodeError(f"video_filename {self.video_filename!r}: give a file name (no folder) ending in "
                            f"{', '.join(FOURCC)}")
        if 0 < self.video_fps < MIN_VIDEO_FPS:
            raise NodeError(f"video_fps {self.video_fps:g}: a video plays at least {MIN_VIDEO_FPS:g} frames/s")
        self._folder = Path(self.folder)
        self._folder.mkdir(parents=True, exist_ok=True)
        self._seen: set[str] = set()
        self._video = None
        self._video_size = None
        self._video_source = None  # auto mode: the input video the open output video holds
        self._video_names: set[str] = set()
        self._last_frame = None  # (source, frame number, pixels) last written to the video
        self.written = 0
        self.tick_on_message(self.image)

    def tick(self):
        image = self.image.read().payload
        pixels = bgr_pixels(image)
        to_video = self.video == "always" or (self.video == "auto" and is_video_source(image.source)
                                              and not image.source.startswith("camera:"))
        if to_video:
            self._write_frame(pixels, image)
        else:
            path = self._folder / image_file_name(image.source, image.frame, self.format, self._seen)
            _refuse_overwriting_the_input(path, image.source)
            options = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality] if self.format == "jpg" else []
            try:
                write_image(path, pixels, options)
            except OSError as exc:  # a full disk, a folder gone: one line, the app stops
                raise NodeError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.written += 1

    def stop(self):
        self._close_video()

    def _close_video(self) -> None:
        if getattr(self, "_video", None) is not None:
            self._video.release()
            self._video = None
            self._last_frame = None

    def _video_path(self, source: str) -> Path:
        """The output video of ``source``: video_filename for the first, else <source stem>.mp4
        (a name already written gets _2, _3 ...)."""
        name = self.video_filename if self.video_filename and not self._video_names else \
            f"{safe_stem(Path(source.replace(':', '_')).stem) or 'video'}.mp4"
        stem, suffix, number = Path(name).stem, Path(name).suffix, 1
        # (restarted after a failure: the video the run before wrote stays, this one is another)
        while name in self._video_names or (resuming() and (self._folder / name).exists()):
            number += 1
            name = f"{stem}_{number}{suffix}"
        self._video_names.add(name)
        return self._folder / name

    def _write_frame(self, pixels: np.ndarray, image: Image) -> None:
        if pixels.ndim == 2:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        if self.video == "auto" and self._video is not None and image.source != self._video_source:
            self._close_video()  # the next input video: an output video of its own
        if self._video is None:
            source = image.source
            path = self._video_path(source)
            _refuse_overwriting_the_input(path, source)
            self._video_source = source
            self._video_size = (pixels.shape[1], pixels.shape[0])
            fps = self.video_fps or image.fps or STILL_IMAGES_FPS
            try:
                self._video = open_video(path, FOURCC.get(path.suffix.lower(), "mp4v"), fps, self._video_size)
            except OSError as exc:
                raise NodeError(str(exc)) from None
            self.log.debug("%s: writing %s at %g frames/s", self.full_name, path, fps)
        if (pixels.shape[1], pixels.shape[0]) != self._video_size:
            pixels = cv2.resize(pixels, self._video_size, interpolation=cv2.INTER_AREA)
        pixels = np.ascontiguousarray(pixels)
        if image.fps > 0 and self._last_frame is not None and self._last_frame[0] == image.source:
            missing = image.frame - self._last_frame[1] - 1
            for _ in range(missing if 0 < missing <= MAX_REPEATED_FRAMES else 0):
                self._video.write(self._last_frame[2])  # keeps the timestamps of the frames after
        self._video.write(pixels)
        self._last_frame = (image.source, image.frame, pixels)


def _refuse_overwriting_the_input(path: Path, source: str) -> None:
    """Writing ``path`` must not replace the file ``source`` that the image was read from."""
    try:
        same = os.path.samefile(path, source)
    except OSError:  # either is missing (or source is a camera): nothing to replace
        return
    if same:
        raise NodeError(f"{path} is the input it was read from: write the outputs to another folder")
