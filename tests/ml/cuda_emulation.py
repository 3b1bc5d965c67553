"""Run a CUDA kernel's source on the CPU: compiled with the host C++ compiler, one call per thread.

This checks a kernel's arithmetic and indexing on machines without a GPU; the real-GPU tests
still check it under CUDA. The kernel may use what plain C++ offers (math functions, min/max,
blockIdx/blockDim/threadIdx in x and y), not shared memory, atomics or warp intrinsics.
"""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np

_PRELUDE = r"""
#include <algorithm>
#include <cmath>
#include <utility>
struct emulated_dim3 { int x, y, z; };
static emulated_dim3 blockIdx, blockDim, threadIdx;
using std::floor; using std::max; using std::min;
#define __device__
#define __forceinline__ inline
#define __global__
"""

# Arguments arrive as the CUDA driver API passes them: an array of pointers to each value.
_LAUNCHER = r"""
template <typename... A, std::size_t... I>
static void emulated_call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}
template <typename... A>
static void emulated_grid(void (*kernel)(A...), int gx, int gy, int bx, int by, void** args) {
    blockDim = {bx, by, 1};
    for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x)
        for (int ty = 0; ty < by; ++ty) for (int tx = 0; tx < bx; ++tx) {
            blockIdx = {x, y, 0};
            threadIdx = {tx, ty, 0};
            emulated_call(kernel, args, std::index_sequence_for<A...>{});
        }
}
extern "C" void emulated_launch(int gx, int gy, int bx, int by, void** args) {
    emulated_grid(%(name)s, gx, gy, bx, by, args);
}
"""

_CTYPES = {np.int32: ctypes.c_int32, np.float32: ctypes.c_float, np.float64: ctypes.c_double}


def compiler() -> str | None:
    return shutil.which("g++") or shutil.which("c++")


class EmulatedKernel:
    """Call like a ``cupy.RawKernel``: ``kernel(grid, block, args)``, with numpy arrays for device
    arrays and numpy scalars (int32, float32, float64) for values."""

    def __init__(self, source: str, name: str, build_dir: Path):
        code = _PRELUDE + source + _LAUNCHER % {"name": name}
        library = build_dir / f"{name}-{hashlib.sha256(code.encode()).hexdigest()[:12]}.so"
        if not library.exists():
            cpp = library.with_suffix(".cpp")
            cpp.write_text(code)
            # No FMA contraction: the comparison is against CPU code that rounds every product.
            subprocess.run([compiler(), "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC",
                            "-o", str(library), str(cpp)], check=True, capture_output=True, text=True)
        self._launch = ctypes.CDLL(str(library)).emulated_launch

    def __call__(self, grid, block, args) -> None:
        values = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                assert arg.flags.c_contiguous, "device arrays are contiguous"
                values.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                values.append(_CTYPES[type(arg)](arg))
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p)
                                                     for v in values))
        self._launch(grid[0], grid[1], block[0], block[1], pointers)


# The part of CuPy's API the GPU nodes call, on host memory.
HOST_CUPY = SimpleNamespace(asarray=np.asarray, asnumpy=np.asarray, full=np.full,
                            int32=np.int32, float32=np.float32, float64=np.float64)
