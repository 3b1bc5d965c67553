"""OpenCV as the node packs use it: imported on first use, with one internal thread.

``from graphflow.packs.vision.opencv import cv2`` gives a stand-in that imports OpenCV the first
time a node uses it (in its ``start``), so listing or validating nodes never pays for it.

The graph's workers already run nodes in parallel, and ONNX Runtime has its own threads;
OpenCV's thread pool on top of them oversubscribes the cores. Measured with
benchmarks/bench_openpose_app.py on 2 cores: app/loop throughput 0.90 with OpenCV's default
pool, 0.975 with one thread (the sequential loop itself was unchanged).
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from types import ModuleType


class _OpenCV:
    """Forwards attribute reads to the real ``cv2`` module, imported on the first one."""

    _module: ModuleType | None = None
    _lock = threading.Lock()

    def load(self) -> ModuleType:
        if _OpenCV._module is None:
            with _OpenCV._lock:
                if _OpenCV._module is None:
                    module = importlib.import_module("cv2")
                    module.setNumThreads(1)
                    _quiet_unless_verbose(module)
                    _OpenCV._module = module
        return _OpenCV._module

    def __getattr__(self, name: str):
        return getattr(self.load(), name)


def _quiet_unless_verbose(module: ModuleType) -> None:
    """OpenCV's own warnings ('[ WARN:0@1.2] global grfmt_tiff.cpp ...', 'cap_v4l.cpp ...') name
    no file and come before graphflow's line that does; they show with -v, or OPENCV_LOG_LEVEL."""
    if os.environ.get("OPENCV_LOG_LEVEL") or logging.getLogger("graphflow").getEffectiveLevel() <= logging.DEBUG:
        return
    try:
        module.utils.logging.setLogLevel(module.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # an OpenCV built without its logging module
        pass


cv2 = _OpenCV()

__all__ = ["cv2"]
