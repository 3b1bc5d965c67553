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
                    _OpenCV._module = module
        return _OpenCV._module

    def __getattr__(self, name: str):
        return getattr(self.load(), name)


cv2 = _OpenCV()

__all__ = ["cv2"]
