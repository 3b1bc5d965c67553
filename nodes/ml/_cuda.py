"""Lazy CUDA access shared by the GPU nodes. Nothing here imports CuPy at module import time."""
from __future__ import annotations


def cupy_with_device():
    """Return the ``cupy`` module when it imports and a CUDA device is present; otherwise raise
    RuntimeError saying why (the text goes into the fallback warning)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        raise RuntimeError(f"CuPy is not available ({type(exc).__name__}: {exc})") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device
        raise RuntimeError(f"no CUDA device ({type(exc).__name__}: {exc})") from None
    if count < 1:
        raise RuntimeError("no CUDA device")
    return cupy


def gpu_identity(cupy) -> str:
    """The current CUDA device as a TensorRT engine depends on it: its name, compute capability,
    multiprocessor count and memory, e.g. 'Orin (nvgpu), sm 8.7, 8 SMs, 7 GiB'. (Every Jetson Orin
    module has the same name; an engine built on one may fail or run slowly on another.)"""
    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return identity_of(properties)


def identity_of(properties: dict) -> str:
    name = properties["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return (f"{name}, sm {properties['major']}.{properties['minor']}, "
            f"{properties['multiProcessorCount']} SMs, {round(properties['totalGlobalMem'] / 2**30)} GiB")


def to_numpy(array):
    """A numpy array from a numpy or CuPy array (a device → host copy for CuPy)."""
    get = getattr(array, "get", None)
    return get() if callable(get) and not hasattr(array, "__array_interface__") else array
