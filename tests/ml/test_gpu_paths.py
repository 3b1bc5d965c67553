"""The GPU code paths on a machine without a GPU: TensorRT and CuPy replaced by small stand-ins
that fail (or succeed) the way the real libraries do, so each fallback and cache rule runs here.
The real-GPU tests in test_tensorrt_inference.py / test_color_camera_encoder.py cover them on CUDA."""
from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from graphflow import NodeError

from graphflow.testing import Harness
from graphflow.packs.ml import _tensorrt_backend as trt_backend
from graphflow.packs.ml import engine_cache
from graphflow.packs.ml.color_camera_encoder import ColorCameraEncoder
from graphflow.packs.ml.color_camera_encoder_cuda import ColorCameraEncoderCuda
from graphflow.packs.ml.tensorrt_inference import TensorRTInference
from graphflow.packs.vision.messages import Image, Tensors
from tests.conftest import DATA, MODELS, REPO

MODEL = "openpose_mobilenet_thin.onnx"
ENCODER = {"rows": 64, "cols": 0, "keep_aspect_ratio": True, "size_multiple": 8, "interpolation": "cubic",
           "pixel_normalization_mode": "None", "tensor_index_order": "201", "tensor_name": "image"}


# -- backend auto falls back to ONNX Runtime --------------------------------------------------------
@pytest.fixture
def failing_tensorrt(monkeypatch):
    """TensorRT imports and a GPU exists, but the engine cannot be built (an old driver, no memory)."""
    class FailingBackend:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("TensorRT failed to build an engine (out of memory)")

    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(trt_backend, "TensorRTBackend", FailingBackend)


@pytest.mark.timeout(60)
def test_auto_falls_back_to_onnxruntime_when_tensorrt_cannot_build(model_path, failing_tensorrt, caplog):
    caplog.set_level(logging.WARNING)
    h = Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "auto"}).start()
    assert h.component.model.name == "onnxruntime"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "TensorRT cannot run" in warnings[0] and "out of memory" in warnings[0]
    h.feed("input", Tensors(names=["image"], tensors=[np.zeros((1, 3, 64, 64), np.float32)]), acqtime=0.0)
    assert h.run_pending() == 1 and h.outputs("output")[0].payload.names == ["heatmaps", "pafs"]


@pytest.mark.timeout(60)
def test_backend_tensorrt_fails_in_start_when_tensorrt_cannot_build(model_path, failing_tensorrt):
    with pytest.raises(NodeError, match="TensorRT cannot run openpose_mobilenet_thin.onnx: RuntimeError: "
                                           "TensorRT failed to build"):
        Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "tensorrt"}).start()


# -- the CUDA encoder checks its kernel in start() ---------------------------------------------------
def fake_cupy(compile_error=None, launch_error=None):
    """A CuPy that sees one CUDA device; its RawKernel fails to compile or to launch as asked."""
    module = types.ModuleType("cupy")

    class RawKernel:
        def __init__(self, source, name):
            self.source, self.name = source, name

        def compile(self):
            if compile_error:
                raise compile_error

        def __call__(self, grid, block, args):
            raise launch_error or AssertionError("not reached")

    module.RawKernel = RawKernel
    module.cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 1))
    module.asarray, module.asnumpy, module.full = np.asarray, np.asarray, np.full
    module.int32, module.float32, module.float64 = np.int32, np.float32, np.float64
    return module


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cupy", [
    fake_cupy(compile_error=RuntimeError("CompileException: cannot open libnvrtc.so.12")),
    fake_cupy(launch_error=RuntimeError("CUDA_ERROR_UNSUPPORTED_PTX_VERSION")),
], ids=["no-nvrtc", "driver-too-old"])
def test_cuda_encoder_falls_back_in_start_when_its_kernel_cannot_run(monkeypatch, caplog, cupy):
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    caplog.set_level(logging.WARNING)
    h = Harness(ColorCameraEncoderCuda, ENCODER).start()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "encoding on the CPU instead" in warnings[0]
    assert h.component._cupy is None
    pixels = cv2.imread(str(DATA / "images" / "bus.jpg"))
    h.feed("rgb_image", Image(pixels=pixels, color_order="bgr"), acqtime=1.0)
    assert h.run_pending() == 1  # the first tick works: no error waits for it
    cpu = Harness(ColorCameraEncoder, ENCODER).start()
    cpu.feed("rgb_image", Image(pixels=pixels, color_order="bgr"), acqtime=1.0)
    cpu.run_pending()
    np.testing.assert_array_equal(h.outputs("tensor")[0].payload.tensors[0], cpu.outputs("tensor")[0].payload.tensors[0])
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # still one warning


# -- the TensorRT profile grows to fit a wider input -------------------------------------------------
def settings(**inputs):
    return {"inputs": inputs, "dim_range": [32, 368, 1280], "max_batch_size": 1}


def test_grown_profile_covers_a_wide_image_and_keeps_fitting_ones():
    dims = (-1, 3, -1, -1)
    assert trt_backend.grown_profile(settings(), "image", dims, (1, 3, 368, 1500))["dim_range"] == [32, 368, 1504]
    assert trt_backend.grown_profile(settings(), "image", dims, (1, 3, 368, 1472))["dim_range"] == [32, 368, 1472]
    assert trt_backend.grown_profile(settings(), "image", dims, (1, 3, 16, 500))["dim_range"] == [16, 368, 1280]
    assert trt_backend.grown_profile(settings(), "image", dims, (2, 3, 64, 64))["max_batch_size"] == 2
    explicit = settings(image={"min_dims": [1, 3, 32, 32], "opt_dims": [1, 3, 368, 368], "max_dims": [1, 3, 512, 512]})
    grown = trt_backend.grown_profile(explicit, "image", dims, (1, 3, 368, 900))["inputs"]["image"]
    assert grown["max_dims"] == [1, 3, 512, 900] and grown["min_dims"] == [1, 3, 32, 32]


class FakeEngine:
    """A TensorRT engine whose profile covers what it was built for; "built" = the profile as JSON."""

    def __init__(self, data: bytes):
        self.settings = json.loads(data.decode()[len("ENGINE"):])
        self.num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["image", "heatmaps"][i]

    def get_tensor_mode(self, name):
        return "input" if name == "image" else "output"

    def get_tensor_dtype(self, name):
        return np.float32

    def get_tensor_shape(self, name):
        return (-1, 3, -1, -1) if name == "image" else (-1, 19, -1, -1)

    def get_tensor_profile_shape(self, name, index):
        low, opt, high = trt_backend.profile_shapes(name, (-1, 3, -1, -1), self.settings)
        return low, opt, high

    def create_execution_context(self):
        return SimpleNamespace()


@pytest.fixture
def fake_tensorrt(monkeypatch, tmp_path):
    """A TensorRT module (engines = FakeEngine) and a CuPy with one device; counts builds."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.TensorIOMode = SimpleNamespace(INPUT="input")
    trt.nptype = lambda dtype: dtype
    trt.Runtime = lambda logger: SimpleNamespace(
        deserialize_cuda_engine=lambda data: FakeEngine(data) if data.startswith(b"ENGINE") else None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    freed = []
    monkeypatch.setattr(trt_backend, "cupy_with_device", lambda: SimpleNamespace(
        cuda=SimpleNamespace(Stream=lambda non_blocking: None),
        get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: freed.append(1))))
    monkeypatch.setattr(trt_backend, "gpu_identity", lambda cp: "Orin (nvgpu)")
    monkeypatch.setattr(engine_cache, "l4t_release", lambda: "R36.4.0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    builds = []

    def build(self, model, fp16, workspace, profile):
        builds.append(profile)
        return b"ENGINE" + json.dumps(profile).encode()

    monkeypatch.setattr(trt_backend.TensorRTBackend, "_build", build)
    return builds


def make_backend(engine_file=""):
    return trt_backend.TensorRTBackend(MODELS / MODEL, engine_file=engine_file, fp16=True,
                                       profile_settings=settings())


@pytest.mark.timeout(60)
def test_an_input_outside_the_profile_makes_an_engine_that_fits(model_path, fake_tensorrt):
    backend = make_backend()
    assert len(fake_tensorrt) == 1
    backend.fit_profile({"image": (1, 3, 368, 1280)})  # at the profile's edge: fits
    assert len(fake_tensorrt) == 1
    backend.fit_profile({"image": (1, 3, 368, 1500)})
    assert len(fake_tensorrt) == 2 and backend.settings["dim_range"] == [32, 368, 1504]
    assert backend.engine.get_tensor_profile_shape("image", 0)[2] == (1, 3, 1504, 1504)
    make_backend()  # a new start loads the first engine from the cache
    assert len(fake_tensorrt) == 2


@pytest.mark.timeout(60)
def test_engine_file_path_loads_only_an_engine_built_for_this_key(model_path, fake_tensorrt, tmp_path, caplog):
    engine = tmp_path / "given.engine"
    engine.write_bytes(b"ENGINE" + json.dumps(settings()).encode())  # an engine without a key file
    caplog.set_level(logging.WARNING)
    backend = make_backend(str(engine))
    assert len(fake_tensorrt) == 1 and "no readable key file" in caplog.text
    key = json.loads(engine_cache.key_file(engine).read_text())
    assert key == backend.key and key["l4t"] == "R36.4.0" and key["precision"] == "fp16"
    make_backend(str(engine))  # now its key matches: loaded, not built
    assert len(fake_tensorrt) == 1
    key["model"] = "0" * 64  # the file is for another model
    engine_cache.key_file(engine).write_text(json.dumps(key))
    caplog.clear()
    make_backend(str(engine))
    assert len(fake_tensorrt) == 2 and "built for another model" in caplog.text


@pytest.mark.timeout(60)
def test_a_grown_profile_never_replaces_the_engine_file_the_user_gave(model_path, fake_tensorrt, tmp_path):
    engine = tmp_path / "given.engine"
    backend = make_backend(str(engine))
    given = engine.read_bytes()
    assert len(fake_tensorrt) == 1
    backend.fit_profile({"image": (1, 3, 368, 1500)})  # a wider image: an engine for a grown profile
    assert len(fake_tensorrt) == 2 and backend.engine_path != engine
    assert backend.engine_path.parent == engine_cache.user_cache_dir() / "engines"
    assert engine.read_bytes() == given  # the user's file still holds the engine for the configured profile
    make_backend(str(engine))  # a restart loads it: no rebuild, and no ping-pong between the two profiles
    assert len(fake_tensorrt) == 2


@pytest.mark.timeout(60)
def test_an_input_beyond_a_fixed_axis_is_refused_without_reloading_the_engine(model_path, fake_tensorrt,
                                                                             monkeypatch):
    backend = make_backend()
    loads = []
    monkeypatch.setattr(backend, "_load_or_build", lambda settings: loads.append(settings))
    backend.fit_profile({"image": (1, 4, 368, 500)})  # 4 channels where the model fixes 3: no profile helps
    backend.fit_profile({"image": (1, 4, 368, 500)})
    assert loads == []  # (set_input_shape then refuses it, naming the profile)
    backend.fit_profile({"image": (1, 3, 368, 1500)})
    assert len(loads) == 1


@pytest.mark.timeout(60)
def test_no_execution_context_is_an_error_and_auto_runs_on_onnxruntime(model_path, fake_tensorrt, monkeypatch,
                                                                      caplog):
    monkeypatch.setattr(FakeEngine, "create_execution_context", lambda self: None)  # TensorRT, out of memory
    with pytest.raises(RuntimeError, match="cannot make an execution context"):
        make_backend()
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    caplog.set_level(logging.WARNING)
    h = Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "auto"}).start()
    assert h.component.model.name == "onnxruntime" and "cannot make an execution context" in caplog.text
    h.stop()


def test_the_progress_monitor_takes_calls_from_several_build_threads(caplog):
    """TensorRT calls its monitor from its build threads and cancels the build when a call raises
    (its binding turns an exception into "cancel")."""
    import threading

    class IProgressMonitor:
        def __init__(self):
            pass

    caplog.set_level(logging.WARNING)
    monitor = trt_backend.build_progress_monitor(SimpleNamespace(IProgressMonitor=IProgressMonitor), every=0.0)
    errors = []

    def phases(tag):
        try:
            for i in range(300):  # phases open and close while the others' lines list them
                monitor.phase_start(f"{tag} {i}", None, 5)
                assert monitor.step_complete(f"{tag} {i}", 1) is True
                if i % 3:
                    monitor.phase_finish(f"{tag} {i}")
        except Exception as error:  # what TensorRT would have taken as "cancel the build"
            errors.append(error)

    threads = [threading.Thread(target=phases, args=(tag,)) for tag in "abcd"]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, as TensorRT's native threads do
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_progress_line_that_cannot_be_written_does_not_cancel_the_build():
    class IProgressMonitor:
        def __init__(self):
            pass

    class Closed:
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    monitor = trt_backend.build_progress_monitor(SimpleNamespace(IProgressMonitor=IProgressMonitor), Closed(), 0.0)
    monitor.phase_start("Building engine", None, 3)
    assert monitor.step_complete("Building engine", 0) is True
    monitor.phase_finish("Building engine")


@pytest.mark.timeout(60)
def test_a_read_only_cache_runs_the_engine_from_memory(model_path, fake_tensorrt, monkeypatch, caplog):
    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(engine_cache, "write_atomically", refuse)
    caplog.set_level(logging.WARNING)
    backend = make_backend()
    assert backend.engine is not None and backend.context is not None
    assert "running it from memory" in caplog.text and "Permission denied" in caplog.text


def test_the_gpu_in_the_engine_key_tells_jetson_modules_of_one_name_apart():
    from graphflow.packs.ml._cuda import identity_of

    # What cudaGetDeviceProperties gives on an Orin Nano 8 GB and an AGX Orin 64 GB: one name.
    nano = {"name": b"Orin", "major": 8, "minor": 7, "multiProcessorCount": 8, "totalGlobalMem": 7_990_000_000}
    agx = {"name": b"Orin", "major": 8, "minor": 7, "multiProcessorCount": 16, "totalGlobalMem": 64_300_000_000}
    assert identity_of(nano) == "Orin, sm 8.7, 8 SMs, 7 GiB"
    assert identity_of(agx) == "Orin, sm 8.7, 16 SMs, 60 GiB"


def test_the_engine_key_names_the_l4t_release(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
                       "DATE: Wed Jan  8 01:49:37 UTC 2025\n")
    assert engine_cache.l4t_release(release) == "R36.4.3"
    assert engine_cache.l4t_release(tmp_path / "missing") == ""
    one = engine_cache.engine_key("a" * 64, "10.3.0", "Orin", "fp16", settings(), l4t="R36.4.3")
    other = engine_cache.engine_key("a" * 64, "10.3.0", "Orin", "fp16", settings(), l4t="R36.3.0")
    assert engine_cache.key_digest(one) != engine_cache.key_digest(other)


# -- extras per target ----------------------------------------------------------------------------------
def test_gpu_extras_match_the_deploy_targets():
    try:
        import tomllib  # novermin: the fallback below covers 3.10
    except ImportError:  # Python 3.10
        import tomli as tomllib
    from graphflow.deploy.targets import TARGETS

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any("pycuda" in requirement for requirements in extras.values() for requirement in requirements)
    for name in ("jetson-jp6", "jetson-jp7"):
        names = {r.split("=")[0].split(">")[0].split("<")[0] for r in extras[name]}
        assert names == set(TARGETS[name].gpu), name  # TensorRT on a Jetson comes from JetPack, not PyPI
    # CUDA 12 builds of both: the bare "tensorrt" package installs its CUDA 13 build, which would
    # sit beside CuPy's CUDA 12 in one process and needs a newer driver.
    assert {r.split(">")[0] for r in extras["gpu"]} == {"cupy-cuda12x", "tensorrt-cu12"}


# -- on a real CUDA GPU -----------------------------------------------------------------------------
def has_cuda() -> bool:
    from graphflow.packs.ml._cuda import cupy_with_device
    try:
        cupy_with_device()
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not has_cuda(), reason="needs CuPy and a CUDA device")
@pytest.mark.timeout(120)
def test_device_tensors_from_the_gpu_encoder_reach_inference_and_come_back_as_numpy(model_path, caplog):
    """keep_on_device: the encoder's CuPy tensor (kernel compiled and launched in start(), no
    warning) feeds ml.TensorRTInference (here ONNX Runtime), whose output is numpy again."""
    import cupy

    caplog.set_level(logging.WARNING)
    config = dict(ENCODER, rows=368, keep_on_device=True)
    encoder = Harness(ColorCameraEncoderCuda, config).start()
    assert encoder.component._kernel is not None and not caplog.records
    pixels = cv2.imread(str(DATA / "images" / "bus.jpg"))
    encoder.feed("rgb_image", Image(pixels=pixels, color_order="bgr"), acqtime=1.0)
    encoder.run_pending()
    tensors = encoder.outputs("tensor")[0].payload
    assert isinstance(tensors.tensors[0], cupy.ndarray)
    cpu = Harness(ColorCameraEncoder, ENCODER | {"rows": 368}).start()
    cpu.feed("rgb_image", Image(pixels=pixels, color_order="bgr"), acqtime=1.0)
    cpu.run_pending()
    host = cpu.outputs("tensor")[0].payload
    np.testing.assert_allclose(cupy.asnumpy(tensors.tensors[0]), host.tensors[0], atol=3e-3)
    outputs = []
    for payload in (tensors, host):
        infer = Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime"}).start()
        infer.feed("input", payload, acqtime=1.0)
        assert infer.run_pending() == 1
        outputs.append(infer.outputs("output")[0].payload.tensors)
    assert all(isinstance(array, np.ndarray) for array in outputs[0])
    for device_side, host_side in zip(*outputs):
        np.testing.assert_allclose(device_side, host_side, atol=1e-3)


def test_the_engine_build_shows_its_progress(caplog):
    """TensorRT 10 reports build phases to an IProgressMonitor: a log line every few seconds
    when not on a terminal (a service's journal)."""
    class IProgressMonitor:
        def __init__(self):
            pass

    caplog.set_level(logging.WARNING)
    monitor = trt_backend.build_progress_monitor(SimpleNamespace(IProgressMonitor=IProgressMonitor), every=0.0)
    monitor.phase_start("Building engine", None, 3)
    monitor.phase_start("Tactic selection", "Building engine", 40)
    assert monitor.step_complete("Tactic selection", 9) is True
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1] == "building the TensorRT engine: Building engine …/3 > Tactic selection 10/40"
    monitor.phase_finish("Tactic selection")
    assert trt_backend.build_progress_monitor(SimpleNamespace()) is None  # TensorRT 8: no monitor
