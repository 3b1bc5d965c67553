"""ml.ColorCameraEncoderCuda — ml.ColorCameraEncoder with resize, normalize and layout on the GPU.

On the GPU (CuPy, one raw CUDA kernel per image) "linear" and "cubic" follow cv2.resize's
float formulas (cv2's pixel mapping, border replication, cubic A = -0.75) and match the CPU
encoder to float rounding; "nearest" is centre-aligned like cv2.INTER_NEAREST_EXACT and can
pick the neighbouring pixel at exact ties; "area" has no GPU kernel and runs on the CPU.
Without CuPy or a CUDA device the node runs the CPU encoder and says so in a debug line (shown
with -v: on a CPU machine there is nothing to act on). Where the kernel does not compile (a CuPy
without NVRTC) or launch (a driver older than the CUDA it compiles for) it runs the CPU encoder
with one warning. start() compiles and launches the kernel once on a tiny image, so nothing of
this waits for the first tick.

With keep_on_device the tensor stays a CuPy array for a GPU inference node in the same process
(ml.TensorRTInference, whose output is numpy again: the declared host boundary). The encoder
waits for its kernel before publishing, so a receiver on any CUDA stream sees finished data.
"""
from __future__ import annotations

import numpy as np

from graphflow import Param

from ._cuda import cupy_with_device
from ._encoding import INDEX_ORDERS, encode_cpu, plan
from .color_camera_encoder import ColorCameraEncoder

GPU_INTERPOLATION = {"nearest": 0, "linear": 1, "cubic": 2}

KERNEL_SOURCE = r"""
__device__ __forceinline__ void cubic_weights(float x, float w[4]) {
    const float A = -0.75f;
    w[0] = ((A * (x + 1.f) - 5.f * A) * (x + 1.f) + 8.f * A) * (x + 1.f) - 4.f * A;
    w[1] = ((A + 2.f) * x - (A + 3.f)) * x * x + 1.f;
    w[2] = ((A + 2.f) * (1.f - x) - (A + 3.f)) * (1.f - x) * (1.f - x) + 1.f;
    w[3] = 1.f - w[0] - w[1] - w[2];
}

// A source pixel's channel; 64-bit offsets: a source of 716 Mpx and more overflows an int.
#define SRC(yy, xx, k) src[((long long)(yy) * src_w + (xx)) * 3 + (k)]

extern "C" __global__ void resize_normalize(
        const unsigned char* src, const int src_h, const int src_w,
        float* dst, const int rows, const int cols, const int resized_h, const int resized_w,
        const double scale_y, const double scale_x, const int mode, const int chw,
        const int c0, const int c1, const int c2, const float low, const float scale,
        const float gain, const float bias) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= resized_w || y >= resized_h) return;
    const int channel[3] = {c0, c1, c2};
    float value[3];
    if (mode == 0) {  // nearest, centre-aligned
        const int sx = min((int)floor((x + 0.5) * scale_x), src_w - 1);
        const int sy = min((int)floor((y + 0.5) * scale_y), src_h - 1);
        for (int c = 0; c < 3; ++c) value[c] = (float)SRC(sy, sx, channel[c]);
    } else if (mode == 1) {  // linear, as cv2.resize on float32
        // cv2 takes the fraction of the double position (a float position near 1000 px is off by up to 6e-5).
        const double px = (x + 0.5) * scale_x - 0.5, py = (y + 0.5) * scale_y - 0.5;
        int sx = (int)floor(px), sy = (int)floor(py);
        float fx = (float)(px - sx), fy = (float)(py - sy);
        if (sx < 0) { fx = 0.f; sx = 0; }
        if (sx >= src_w - 1) { fx = 0.f; sx = src_w - 1; }
        if (sy < 0) { fy = 0.f; sy = 0; }
        if (sy >= src_h - 1) { fy = 0.f; sy = src_h - 1; }
        const int sx1 = min(sx + 1, src_w - 1), sy1 = min(sy + 1, src_h - 1);
        for (int c = 0; c < 3; ++c) {
            const int k = channel[c];
            const float top = (1.f - fx) * SRC(sy, sx, k) + fx * SRC(sy, sx1, k);
            const float bottom = (1.f - fx) * SRC(sy1, sx, k) + fx * SRC(sy1, sx1, k);
            value[c] = (1.f - fy) * top + fy * bottom;
        }
    } else {  // cubic, as cv2.resize on float32 (A = -0.75, replicated border)
        const double px = (x + 0.5) * scale_x - 0.5, py = (y + 0.5) * scale_y - 0.5;
        const int sx = (int)floor(px), sy = (int)floor(py);
        float wx[4], wy[4];
        cubic_weights((float)(px - sx), wx);
        cubic_weights((float)(py - sy), wy);
        int xs[4], ys[4];
        for (int i = 0; i < 4; ++i) {
            xs[i] = min(max(sx - 1 + i, 0), src_w - 1);
            ys[i] = min(max(sy - 1 + i, 0), src_h - 1);
        }
        for (int c = 0; c < 3; ++c) {
            const int k = channel[c];
            float sum = 0.f;
            for (int j = 0; j < 4; ++j) {
                float row = 0.f;
                for (int i = 0; i < 4; ++i) row += wx[i] * SRC(ys[j], xs[i], k);
                sum += wy[j] * row;
            }
            value[c] = sum;
        }
    }
    for (int c = 0; c < 3; ++c) {
        // the contrast stretch (low 0, scale 1: none) before the clip, as on the CPU
        const float v = fminf(fmaxf((value[c] - low) * scale, 0.f), 255.f) * gain + bias;
        if (chw) dst[((long long)c * rows + y) * cols + x] = v;
        else dst[((long long)y * cols + x) * 3 + c] = v;
    }
}
"""


class ColorCameraEncoderCuda(ColorCameraEncoder):
    """ColorCameraEncoder on a CUDA GPU (CuPy); falls back to the CPU encoder without one."""

    keep_on_device = Param(bool, False, "Publish the tensor as a CuPy array on the GPU (for a GPU "
                                        "inference node) instead of copying it back to numpy.")

    def start(self):
        super().start()
        self._cupy = self._kernel = None
        try:
            self._cupy = cupy_with_device()
        except RuntimeError as why:
            self.log.debug("%s: %s; encoding on the CPU instead (cv2).", self.full_name, why)
            return
        if self.interpolation not in GPU_INTERPOLATION:
            self.log.warning("%s: interpolation %r has no GPU kernel; encoding on the CPU instead.",
                             self.full_name, self.interpolation)
            self._cupy = None
            return
        try:
            self._kernel = self._cupy.RawKernel(KERNEL_SOURCE, "resize_normalize")
            self._kernel.compile()  # NVRTC runs here, not lazily on the first tick
            self.encode(np.zeros((4, 4, 3), np.uint8), plan(4, 4, 4, 4, False, 1))  # and one launch
        except Exception as exc:
            self.log.warning("%s: the CUDA kernel does not compile or run here (%s: %s); encoding on the "
                             "CPU instead (cv2).", self.full_name, type(exc).__name__, exc)
            self._cupy = self._kernel = None

    def encode(self, pixels, sizes, levels=(0.0, 1.0)):
        cp = self._cupy
        if cp is None or self.interpolation not in GPU_INTERPOLATION or pixels.dtype != np.uint8:
            # (the kernel reads bytes; other depths are clipped on the CPU, not wrapped)
            return encode_cpu(pixels, sizes, levels=levels, **self.encoding_options())
        options = self.encoding_options()
        channel_map = (0, 1, 2)
        if pixels.strides[2] < 0:  # a channel-reversed view: upload the original order, swap on the GPU
            pixels, channel_map = pixels[:, :, ::-1], (2, 1, 0)
        source = cp.asarray(np.ascontiguousarray(pixels, dtype=np.uint8))
        chw = INDEX_ORDERS[options["index_order"]] == (2, 0, 1)
        shape = (3, sizes.rows, sizes.cols) if chw else (sizes.rows, sizes.cols, 3)
        out = cp.full(shape, options["pad_value"] * options["gain"] + options["bias"], dtype=cp.float32)
        block = (16, 16, 1)
        grid = ((sizes.resized_w + 15) // 16, (sizes.resized_h + 15) // 16, 1)
        self._kernel(grid, block, (
            source, cp.int32(sizes.image_h), cp.int32(sizes.image_w), out,
            cp.int32(sizes.rows), cp.int32(sizes.cols), cp.int32(sizes.resized_h), cp.int32(sizes.resized_w),
            cp.float64(sizes.image_h / sizes.resized_h), cp.float64(sizes.image_w / sizes.resized_w),
            cp.int32(GPU_INTERPOLATION[self.interpolation]), cp.int32(chw),
            cp.int32(channel_map[0]), cp.int32(channel_map[1]), cp.int32(channel_map[2]),
            cp.float32(levels[0]), cp.float32(levels[1]), cp.float32(options["gain"]), cp.float32(options["bias"])))
        if options["batch_dim"]:
            out = out[None]
        if self.keep_on_device:
            cp.cuda.get_current_stream().synchronize()  # receivers need not share this stream
            return out
        return cp.asnumpy(out)
