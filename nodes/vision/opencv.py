"""OpenCV as the node packs use it: with one internal thread.

The graph's workers already run nodes in parallel, and ONNX Runtime has its own threads;
OpenCV's thread pool on top of them oversubscribes the cores. Measured with
benchmarks/bench_openpose_app.py on 2 cores: app/loop throughput 0.90 with OpenCV's default
pool, 0.975 with one thread (the sequential loop itself was unchanged).
"""
import cv2

cv2.setNumThreads(1)

__all__ = ["cv2"]
