"""TensorRT backend of ml.TensorRTInference (TensorRT 10 Python API, CuPy device buffers).

The engine is built from the ONNX file once (OnnxParser, one optimization profile covering
the dynamic dimensions, FP16 when asked), serialized, and cached (engine_cache.py: keyed by model
sha256, TensorRT version, GPU (name, compute capability, SMs, memory), L4T release, precision
and profile). Later runs deserialize it in about a second. An input outside the profile (a wider
image than profile_dim_range allows) rebuilds the engine once with a profile grown to cover it,
as ONNX Runtime would accept it; that engine goes to the cache, never into engine_file_path,
which keeps the engine of the configured profile.
``tensorrt`` and ``cupy`` are imported only when this backend is built.
"""
from __future__ import annotations

import copy
import os
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ._cuda import cupy_with_device, gpu_identity
from graphflow.files import sha256_file

from .engine_cache import cached_engine_path, engine_key, read_engine, write_engine

log = logging.getLogger("graphflow.ml.tensorrt")


def tensorrt_available() -> tuple[bool, str]:
    """Whether TensorRT imports and a CUDA device (via CuPy) exists; the reason when not."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:
        return False, f"tensorrt does not import ({type(exc).__name__}: {exc})"
    try:
        cupy_with_device()
    except RuntimeError as why:
        return False, str(why)
    return True, ""


def profile_shapes(name: str, dims: tuple[int, ...], settings: dict) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) shapes of one network input. ``settings`` = {"inputs": {name: {min_dims,
    opt_dims, max_dims}}, "dim_range": [min, opt, max], "max_batch_size": n}. Fixed dims stay;
    a dynamic first dim is the batch (1, 1, max_batch_size); other dynamic dims take dim_range."""
    given = settings["inputs"].get(name, {})
    if all(key in given for key in ("min_dims", "opt_dims", "max_dims")):
        return tuple(given["min_dims"]), tuple(given["opt_dims"]), tuple(given["max_dims"])
    low, opt, high = settings["dim_range"]
    shapes = ([], [], [])
    for axis, dim in enumerate(dims):
        if dim >= 0:
            choice = (dim, dim, dim)
        elif axis == 0:
            choice = (1, 1, settings["max_batch_size"])
        else:
            choice = (low, opt, high)
        for shape, value in zip(shapes, choice):
            shape.append(value)
    return tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2])


PROFILE_STEP = 32  # a grown profile's maximum is rounded up to this, so nearby sizes share an engine


def grown_profile(settings: dict, name: str, dims: tuple[int, ...], shape: tuple[int, ...]) -> dict:
    """Profile settings that also cover ``shape`` for input ``name`` (network dims ``dims``)."""
    grown = copy.deepcopy(settings)
    given = grown["inputs"].get(name, {})
    if all(key in given for key in ("min_dims", "opt_dims", "max_dims")):
        given["min_dims"] = [min(m, v) for m, v in zip(given["min_dims"], shape)]
        given["max_dims"] = [max(m, v) for m, v in zip(given["max_dims"], shape)]
        return grown
    low, opt, high = grown["dim_range"]
    needed = [value for axis, (dim, value) in enumerate(zip(dims, shape)) if dim < 0 and axis > 0]
    if needed:
        top = -(-max(needed) // PROFILE_STEP) * PROFILE_STEP
        grown["dim_range"] = [min([low] + needed), opt, max(high, top)]
    if dims and dims[0] < 0 and shape[0] > grown["max_batch_size"]:
        grown["max_batch_size"] = shape[0]
    return grown


def build_progress_monitor(trt, stream=None, every: float = 2.0):
    """A TensorRT progress monitor (TensorRT 10's IProgressMonitor) that shows the build's current
    phase and step: one line redrawn on a terminal, a log line every ``every`` seconds otherwise.
    None where TensorRT has no progress monitor."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None
    out = stream or sys.stderr

    class BuildProgress(base):
        # TensorRT calls a monitor from several of its build threads, and cancels the build when
        # a call raises: every call takes the lock, and showing the progress never raises.
        def __init__(self):
            base.__init__(self)
            self.steps: dict[str, int] = {}
            self.shown = 0.0
            self.lock = threading.Lock()

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self.lock:
                self.steps[phase_name] = num_steps
                self.show(phase_name, 0)

        def step_complete(self, phase_name, step):
            with self.lock:
                self.show(phase_name, step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            with self.lock:
                self.steps.pop(phase_name, None)
                if not self.steps:
                    self.show(None, 0)

        def show(self, phase, step):
            try:
                terminal = out.isatty()
                if phase is None:  # the last phase finished
                    if terminal:
                        out.write("\n")
                    return
                now = time.monotonic()
                if not terminal and now - self.shown < every:
                    return
                self.shown = now
                line = "building the TensorRT engine: " + " > ".join(
                    f"{name} {step if name == phase else '…'}/{total}" for name, total in self.steps.items())
                if terminal:
                    out.write("\r" + line[:150].ljust(150))
                    out.flush()
                else:
                    log.warning("%s", line)
            except Exception:  # a closed or full stream: the build matters more than its progress line
                log.debug("cannot show the build's progress", exc_info=True)

    return BuildProgress()


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model: Path, *, engine_file: str = "", fp16: bool = True,
                 max_workspace_size: int = 1 << 30, profile_settings: dict):
        import tensorrt as trt

        self.trt = trt
        self.cp = cupy_with_device()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.model, self.fp16, self.workspace = model, fp16, max_workspace_size
        self.model_sha256 = sha256_file(model)
        self.engine_file = Path(os.path.expanduser(engine_file)) if engine_file else None
        self.configured = profile_settings  # engine_file holds the engine for these; grown ones go to the cache
        self.engine = self.context = None
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        # A blocking stream: it also waits for work queued on the legacy default stream.
        self.stream = self.cp.cuda.Stream(non_blocking=False)
        self._load_or_build(profile_settings)

    def _load_or_build(self, settings: dict) -> None:
        """Load the engine for ``settings`` from the cache (or engine_file_path) when its key
        matches, else build it; a cache that cannot be written leaves it running from memory."""
        trt = self.trt
        self.settings = settings
        self.key = engine_key(self.model_sha256, trt.__version__, gpu_identity(self.cp),
                              "fp16" if self.fp16 else "fp32", settings)
        given = self.engine_file is not None and settings == self.configured
        self.engine_path = self.engine_file if given else cached_engine_path(self.model, self.key)
        data = read_engine(self.engine_path, self.key)
        engine = self.runtime.deserialize_cuda_engine(data) if data else None
        if data and engine is None:
            log.warning("TensorRT engine %s does not load here (built by another TensorRT version "
                        "or GPU?); building a new one", self.engine_path)
        if engine is None:
            data = self._build(self.model, self.fp16, self.workspace, settings)
            engine = self.runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise RuntimeError(f"TensorRT could not load the engine it just built for {self.model}")
            write_engine(self.engine_path, data, self.key)  # only once it loads; failure: warn, run from memory
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.inputs = {n: (tuple(engine.get_tensor_shape(n)), self.dtypes[n]) for n in names if is_input[n]}
        self.outputs = {n: tuple(engine.get_tensor_shape(n)) for n in names if not is_input[n]}
        self.context = engine.create_execution_context()
        if self.context is None:  # TensorRT's answer when the context's device memory cannot be had
            raise RuntimeError(f"TensorRT cannot make an execution context for {self.model} (out of GPU "
                               f"memory?)")

    def _release(self) -> None:
        """Let go of the engine and its context and return their device memory before another is
        made (a Jetson's GPU shares the board's memory: two engines at once may not fit)."""
        self.context = self.engine = None
        self.cp.get_default_memory_pool().free_all_blocks()

    def _build(self, model: Path, fp16: bool, workspace: int, settings: dict) -> bytes:
        trt = self.trt
        log.warning("building a TensorRT engine for %s (%s); the first run takes tens of seconds, "
                    "later runs load it from the cache", model, "FP16" if fp16 else "FP32")
        started = time.monotonic()
        builder = trt.Builder(self.logger)
        flags = 0
        if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TRT 10 on
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(model)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT cannot parse {model}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        if fp16 and hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
        elif fp16:  # TensorRT 11 on: networks are strongly typed, precision comes from the model
            log.warning("TensorRT %s has no FP16 builder flag (its networks are strongly typed): the engine "
                        "keeps the model's precision; for FP16, give it an FP16 ONNX model", trt.__version__)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            low, opt, high = profile_shapes(tensor.name, tuple(tensor.shape), settings)
            profile.set_shape(tensor.name, low, opt, high)
        config.add_optimization_profile(profile)
        monitor = build_progress_monitor(trt)
        if monitor is not None:
            config.progress_monitor = monitor
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {model} (see its log above)")
        log.warning("built the TensorRT engine in %.0f s", time.monotonic() - started)
        return bytes(serialized)

    def fit_profile(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Rebuild (or load from the cache) an engine whose profile covers these input shapes,
        when the current one does not."""
        settings = self.settings
        for name, shape in shapes.items():
            low, _, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))
            if len(shape) != len(low) or any(v < lo or v > hi for v, lo, hi in zip(shape, low, high)):
                settings = grown_profile(settings, name, self.inputs[name][0], shape)
        if settings != self.settings:  # (a fixed axis cannot grow: set_input_shape then says so)
            log.warning("input shapes %s lie outside the TensorRT optimization profile; making an engine for "
                        "a profile that covers them (%s)", shapes, settings)
            self._release()
            self._load_or_build(settings)

    def run(self, feeds: dict, output_names: list[str]) -> list[np.ndarray]:
        cp = self.cp
        with self.stream:
            arrays = {name: cp.ascontiguousarray(cp.asarray(feeds[name]).astype(self.dtypes[name], copy=False))
                      for name in self.inputs}
            if self.engine is None:  # the last rebuild failed: try again (it says why again)
                self._load_or_build(self.settings)
            self.fit_profile({name: tuple(array.shape) for name, array in arrays.items()})
            context = self.context
            keep_alive = []
            for name, array in arrays.items():
                if not context.set_input_shape(name, tuple(array.shape)):
                    low, _, high = self.engine.get_tensor_profile_shape(name, 0)
                    raise ValueError(f"input {name!r} of shape {tuple(array.shape)} does not fit the "
                                     f"TensorRT engine (profile min {tuple(low)}, max {tuple(high)})")
                context.set_tensor_address(name, array.data.ptr)
                keep_alive.append(array)
            outputs = {}
            for name in self.outputs:
                shape = tuple(context.get_tensor_shape(name))
                if min(shape, default=0) < 0:
                    raise ValueError(f"output {name!r} of {self.model.name} has a shape known only after "
                                     f"running ({shape}), which the TensorRT backend does not support; "
                                     f"use the onnxruntime backend for this model")
                out = cp.empty(shape, dtype=self.dtypes[name])
                context.set_tensor_address(name, out.data.ptr)
                outputs[name] = out
            if not context.execute_async_v3(self.stream.ptr):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            result = [cp.asnumpy(outputs[name], stream=self.stream) for name in output_names]
            self.stream.synchronize()
        return result
