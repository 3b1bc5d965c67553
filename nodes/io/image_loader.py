"""io.ImageLoader — publishes images from a file, a folder, a glob, a video file or a camera.

Tx:     color (vision/Image): BGR uint8 pixels, `source` = the file path (or "camera:N"),
        `frame` = the frame's index in its video/camera, or the still image's index in the
        sorted file list.
Params: path, tick_period, loop, skip_bad_files.

`path` is one of: an image or video file; a folder (its image and video files, sorted by
name); a glob such as "data/*.jpg" or "data/**/*.png" (matches sorted, filtered to image and
video files); "camera:0" (an OpenCV camera index). A path that matches nothing fails in
start(), naming the path. An unreadable or corrupt file stops the app with an error naming the
file, or, with skip_bad_files, logs a warning and moves on. At the end the loader reports itself
exhausted (never with loop or a camera), so an app over a data set ends by itself.
tick_period "0" publishes as fast as the scheduler allows; give the edge to the next node the
queue policy "block" so that nothing is dropped.
"""
from __future__ import annotations

import glob
from pathlib import Path

from graphflow import Codelet, Param, Period, Tx
from graphflow.packs.vision.messages import Image
from graphflow.packs.vision.opencv import cv2

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pbm", ".pnm", ".jp2", ".exr", ".hdr", ".pic", ".ras", ".sr", ".avif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".mjpeg", ".mjpg", ".3gp", ".ts"}
CAMERA_PREFIX = "camera:"


def is_video_source(source: str) -> bool:
    """Whether ``source`` names a video file or a camera (frames share one source)."""
    return source.startswith(CAMERA_PREFIX) or Path(source).suffix.lower() in VIDEO_SUFFIXES


def list_sources(path: str) -> list[Path]:
    """The files ``path`` stands for (see the module doc); raises FileNotFoundError if none."""
    given = Path(path).expanduser()
    wanted = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    if given.is_file():
        return [given]
    if given.is_dir():
        files = sorted(f for f in given.iterdir() if f.is_file() and f.suffix.lower() in wanted)
        if not files:
            raise FileNotFoundError(f"folder {str(given)!r} holds no image or video files "
                                    f"(looked for {', '.join(sorted(wanted))})")
        return files
    if glob.has_magic(path):
        files = sorted(Path(f) for f in glob.glob(str(given), recursive=True)
                       if Path(f).is_file() and Path(f).suffix.lower() in wanted)
        if not files:
            raise FileNotFoundError(f"pattern {path!r} matches no image or video files")
        return files
    raise FileNotFoundError(f"path {path!r} does not exist (expected an image or video file, a folder, "
                            f"a glob like 'images/*.jpg', or 'camera:0')")


class ImageLoader(Codelet):
    """Publishes one image per tick from files, a video or a camera; exhausted at the end."""

    color = Tx(Image, "The next image, BGR uint8.")
    path = Param(str, doc="Image or video file, folder, glob ('images/*.jpg') or 'camera:0'.")
    tick_period = Param(Period, "10Hz", "How often to publish; 0 = as fast as the app runs.")
    loop = Param(bool, False, "Start again from the first file at the end (never exhausted).")
    skip_bad_files = Param(bool, False, "Warn about and skip unreadable files instead of failing.")

    def start(self):
        self._camera = self.path.startswith(CAMERA_PREFIX)
        if self._camera:
            index = self.path[len(CAMERA_PREFIX):]
            capture = cv2.VideoCapture(int(index) if index.isdigit() else index)
            if not capture.isOpened():
                raise RuntimeError(f"{self.full_name}: cannot open camera {self.path!r}")
            self._files: list[Path] = []
        else:
            try:
                self._files = list_sources(self.path)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{self.full_name}: {exc}") from None
            capture = None
        self._capture, self._capture_source = capture, self.path
        self._next_file = 0
        self._video_frame = 0
        self._good_this_pass = 0
        self.tick_periodically(self.tick_period)

    def tick(self):
        found = self._next_image()
        if found is None:
            self.report_exhausted()
            return
        pixels, source, frame = found
        self.color.publish(Image(pixels=pixels, color_order="bgr", source=source, frame=frame))
        if not self.loop and self._capture is None and self._next_file >= len(self._files):
            self.report_exhausted()

    def stop(self):
        if getattr(self, "_capture", None) is not None:
            self._capture.release()
            self._capture = None

    # -- reading ---------------------------------------------------------------------------------
    def _next_image(self):
        """(pixels, source, frame) of the next readable image, or None at the end."""
        while True:
            if self._capture is not None:
                ok, pixels = self._capture.read()
                if ok and pixels is not None:
                    self._good_this_pass += self._video_frame == 0
                    self._video_frame += 1
                    return pixels, self._capture_source, self._video_frame - 1
                self._capture.release()
                self._capture = None
                if self._camera:
                    raise RuntimeError(f"{self.full_name}: camera {self.path!r} returned no frame")
                if self._video_frame == 0:
                    self._bad(self._capture_source, "has no readable video frames")
                continue
            if self._next_file >= len(self._files):
                if not self.loop or self._good_this_pass == 0:
                    return None
                self._next_file, self._good_this_pass = 0, 0
            index, file = self._next_file, self._files[self._next_file]
            self._next_file += 1
            if file.suffix.lower() in VIDEO_SUFFIXES:
                capture = cv2.VideoCapture(str(file))
                if not capture.isOpened():
                    self._bad(str(file), "cannot be opened as a video")
                    continue
                self._capture, self._capture_source, self._video_frame = capture, str(file), 0
                continue
            pixels = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if pixels is None:
                self._bad(str(file), "cannot be read as an image (corrupt, truncated or not an image)")
                continue
            self._good_this_pass += 1
            return pixels, str(file), index

    def _bad(self, file: str, why: str) -> None:
        message = f"{self.full_name}: file {file!r} {why}"
        if not self.skip_bad_files:
            raise ValueError(message)
        self.log.warning("%s; skipped (skip_bad_files)", message)
