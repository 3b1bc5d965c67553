"""TensorRT backend of ml.TensorRTInference (TensorRT 10 Python API, CuPy device buffers).

The engine is built from the ONNX file once (OnnxParser, one optimization profile covering
the dynamic dimensions, FP16 when asked), serialized, and cached under
``<user cache>/engines/<model stem>-<key>.engine``, the key hashing (model sha256, TensorRT
version, GPU name, precision, profile settings). Later runs deserialize it in about a second.
``tensorrt`` and ``cupy`` are imported only when this backend is built.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from graphflow.files import write_atomically

from ._cuda import cupy_with_device, gpu_name
from .model_path import user_cache_dir

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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model: Path, *, engine_file: str = "", fp16: bool = True,
                 max_workspace_size: int = 1 << 30, profile_settings: dict):
        import tensorrt as trt

        self.trt = trt
        self.cp = cupy_with_device()
        self.logger = trt.Logger(trt.Logger.WARNING)
        precision = "fp16" if fp16 else "fp32"
        if engine_file:
            engine_path = Path(engine_file).expanduser()
        else:
            key_text = json.dumps({"model": file_sha256(model), "tensorrt": trt.__version__,
                                   "gpu": gpu_name(self.cp), "precision": precision,
                                   "profile": profile_settings}, sort_keys=True)
            key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
            engine_path = user_cache_dir() / "engines" / f"{model.stem}-{precision}-{key}.engine"
        self.engine_path = engine_path
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        self.engine = self._load(engine_path) if engine_path.is_file() else None
        if self.engine is None:
            data = self._build(model, fp16, max_workspace_size, profile_settings)
            write_atomically(engine_path, data)
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not load the engine it just built ({engine_path})")
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.inputs = {n: (tuple(engine.get_tensor_shape(n)), self.dtypes[n]) for n in names if is_input[n]}
        self.outputs = {n: tuple(engine.get_tensor_shape(n)) for n in names if not is_input[n]}
        self.context = engine.create_execution_context()
        # A blocking stream: it waits for work queued on the legacy default stream (e.g. an
        # encoder kernel that produced a CuPy input).
        self.stream = self.cp.cuda.Stream(non_blocking=False)

    def _load(self, path: Path):
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            log.warning("TensorRT engine %s does not load here (built by another TensorRT version "
                        "or GPU?); building a new one", path)
        return engine

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
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {model} (see its log above)")
        log.warning("built the TensorRT engine in %.0f s", time.monotonic() - started)
        return bytes(serialized)

    def run(self, feeds: dict, output_names: list[str]) -> list[np.ndarray]:
        cp, context = self.cp, self.context
        with self.stream:
            keep_alive = []
            for name in self.inputs:
                array = cp.ascontiguousarray(cp.asarray(feeds[name]).astype(self.dtypes[name], copy=False))
                if not context.set_input_shape(name, tuple(array.shape)):
                    low, _, high = self.engine.get_tensor_profile_shape(name, 0)
                    raise ValueError(f"input {name!r} of shape {tuple(array.shape)} lies outside the "
                                     f"TensorRT optimization profile (min {tuple(low)}, max {tuple(high)}); "
                                     f"widen profile_dim_range or the min_dims/max_dims of input_tensor_info")
                context.set_tensor_address(name, array.data.ptr)
                keep_alive.append(array)
            outputs = {}
            for name in self.outputs:
                out = cp.empty(tuple(context.get_tensor_shape(name)), dtype=self.dtypes[name])
                context.set_tensor_address(name, out.data.ptr)
                outputs[name] = out
            if not context.execute_async_v3(self.stream.ptr):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            result = [cp.asnumpy(outputs[name], stream=self.stream) for name in output_names]
            self.stream.synchronize()
        return result
