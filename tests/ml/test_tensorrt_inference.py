"""ml.TensorRTInference: ONNX Runtime golden parity, dynamic sizes, tensor info, errors; the
TensorRT backend where a GPU and tensorrt exist."""
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from graphflow import NodeError

from graphflow.testing import Harness
from graphflow.packs.ml._tensorrt_backend import profile_shapes, tensorrt_available
from graphflow.packs.ml.tensorrt_inference import TensorRTInference
from graphflow.packs.vision.messages import ImageTransform, Tensors
from tests.conftest import DATA, MODELS

MODEL = "openpose_mobilenet_thin.onnx"
GOLDEN = DATA / "reference" / "openpose_mobilenet_thin_bus_368x432.npz"
needs_model = pytest.mark.skipif(not (MODELS / MODEL).exists(), reason="shared OpenPose model not present")
needs_tensorrt = pytest.mark.skipif(not tensorrt_available()[0], reason="needs tensorrt and a CUDA GPU")


def infer(config, *arrays, name="image"):
    h = Harness(TensorRTInference, {"model_file_path": MODEL, **config}).start()
    transform = ImageTransform(scale_x=2.0, scale_y=3.0, offset_x=0.5, offset_y=1.0, image_width=10, image_height=20)
    for k, array in enumerate(arrays):
        h.feed("input", Tensors(names=[name], tensors=[array], transform=transform, source="bus.jpg", frame=k),
               acqtime=float(k))
    assert h.run_pending() == len(arrays)
    return h, [m for m in h.outputs("output")]


def golden_input():
    data = np.load(GOLDEN)
    return data, data["input_bgr_uint8_hwc"].astype(np.float32).transpose(2, 0, 1)[None]


@needs_model
@pytest.mark.skipif(not GOLDEN.exists(), reason="golden reference not present")
def test_onnxruntime_matches_the_golden_outputs(model_path):
    data, image = golden_input()
    _, (message,) = infer({"backend": "onnxruntime", "intra_op_threads": 2}, image)
    out = message.payload
    assert out.names == ["heatmaps", "pafs"]
    np.testing.assert_allclose(out.get("heatmaps"), data["heatmaps"], atol=1e-3)
    np.testing.assert_allclose(out.get("pafs"), data["pafs"], atol=1e-3)
    assert out.source == "bus.jpg" and out.frame == 0 and message.acqtime == 0.0
    assert out.transform.scale_x == 2.0 and out.transform.offset_y == 1.0 and out.transform.image_height == 20


@needs_model
def test_dynamic_input_sizes_in_one_component(model_path):
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    odd = rng.uniform(0, 255, (3, 60, 50)).astype(np.float32)  # no batch axis, not multiples of 8
    h, messages = infer({"backend": "auto", "output_tensor_info": [{"operation_name": "heatmaps",
                                                                   "dims": [1, 19, -1, -1]}]}, small, odd)
    assert h.component.model.name == ("tensorrt" if tensorrt_available()[0] else "onnxruntime")
    assert [m.payload.names for m in messages] == [["heatmaps"], ["heatmaps"]]
    assert messages[0].payload.tensors[0].shape == (1, 19, 8, 12)
    assert messages[1].payload.tensors[0].shape == (1, 19, 8, 7)  # ceil(60/8), ceil(50/8)
    assert [m.payload.frame for m in messages] == [0, 1]


@needs_model
def test_the_model_runs_on_one_thread_of_its_own_whichever_thread_ticks(model_path):
    # ONNX Runtime's thread pool is slower when the calling thread changes (the node's doc).
    h = Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime"}).start()
    model, callers = h.component.model, []
    run = model.run

    def recording_run(feeds, names):
        callers.append(threading.get_ident())
        return run(feeds, names)

    model.run = recording_run
    image = np.zeros((1, 3, 16, 16), np.float32)
    tickers = []
    for frame in range(3):  # each tick from another thread, as graph workers do
        h.feed("input", Tensors(names=["image"], tensors=[image], frame=frame))
        ticker = threading.Thread(target=h.run_pending)
        ticker.start()
        ticker.join()
        tickers.append(ticker.ident)
    assert [m.payload.frame for m in h.outputs("output")] == [0, 1, 2]
    assert len(set(callers)) == 1 and callers[0] not in tickers
    runner = next(t for t in threading.enumerate() if t.ident == callers[0])
    h.stop()
    runner.join(5)
    assert not runner.is_alive()


@needs_model
def test_input_tensor_info_channel_and_dims(model_path):
    image = np.zeros((1, 3, 32, 32), np.float32)
    info = [{"operation_name": "image", "dims": [1, 3, -1, -1], "channel": "encoded"}]
    _, (message,) = infer({"backend": "onnxruntime", "input_tensor_info": info}, image, name="encoded")
    assert message.payload.get("pafs").shape == (1, 38, 4, 4)
    h = Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime",
                                    "input_tensor_info": info}).start()
    h.feed("input", Tensors(names=["a", "b"], tensors=[image, image]))
    with pytest.raises(NodeError, match="no tensor 'encoded'"):
        h.run_pending()
    h.feed("input", Tensors(names=["encoded"], tensors=[np.zeros((1, 4, 32, 32), np.float32)]))
    with pytest.raises(NodeError, match=r"shape \[1, 4, 32, 32\], expected \[1, 3, -1, -1\]"):
        h.run_pending()


@needs_model
def test_bad_tensor_info_fails_in_start(model_path):
    with pytest.raises(NodeError, match=r"no output 'heatmap'.*\['heatmaps', 'pafs'\]"):
        Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime",
                                    "output_tensor_info": [{"operation_name": "heatmap"}]}).start()
    with pytest.raises(NodeError, match="dims .* do not fit"):
        Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime",
                                    "input_tensor_info": [{"operation_name": "image", "dims": [1, 4, -1, -1]}]}).start()
    with pytest.raises(NodeError, match="unknown keys"):
        Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime",
                                    "input_tensor_info": [{"operation_name": "image", "shape": [1]}]}).start()
    with pytest.raises(NodeError, match="providers"):
        Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "onnxruntime",
                                    "onnxruntime_providers": ["NoSuchExecutionProvider"]}).start()


@needs_model
def test_an_input_of_another_size_than_a_fixed_size_model_takes_is_one_line(model_path):
    """yolo11n-pose takes [1, 3, 640, 640] (MANIFEST.md); input_tensor_info saying -1 there let a
    368-row tensor through to ONNX Runtime's InvalidArgument traceback."""
    info = [{"operation_name": "images", "dims": [1, 3, -1, -1]}]
    h = Harness(TensorRTInference, {"model_file_path": "yolo11n-pose.onnx", "backend": "onnxruntime",
                                    "input_tensor_info": info, "output_tensor_info": [{"operation_name": "output0"}]})
    h.start()
    h.feed("input", Tensors(names=["images"], tensors=[np.zeros((1, 3, 368, 544), np.float32)]))
    with pytest.raises(NodeError, match=r"^input 'images' \(the model's fixed sizes\) has shape \[1, 3, 368, 544\], "
                                        r"expected \[1, 3, 640, 640\]"):
        h.run_pending()
    h.feed("input", Tensors(names=["images"], tensors=[np.zeros((1, 3, 640, 640), np.float32)]))
    h.run_pending()
    assert h.outputs("output")[-1].payload.tensors[0].shape == (1, 56, 8400)
    h.stop()


@needs_model
def test_input_tensor_info_must_list_every_input_of_a_model_with_several(model_path, monkeypatch):
    """A model with two inputs (as a backend reports them) and input_tensor_info naming one:
    refused in start, not a missing feed on the first frame."""
    from types import SimpleNamespace

    two_inputs = SimpleNamespace(name="onnxruntime", inputs={"image": ((1, 3, -1, -1), np.float32),
                                                             "scale": ((1,), np.float32)},
                                 outputs={"heatmaps": (1, 19, -1, -1)})
    monkeypatch.setattr(TensorRTInference, "_make_backend", lambda self, model: two_inputs)
    with pytest.raises(NodeError, match=r"lists \['image'\] but the model also needs \['scale'\]"):
        Harness(TensorRTInference, {"model_file_path": MODEL,
                                    "input_tensor_info": [{"operation_name": "image"}]}).start()
    both = [{"operation_name": "image"}, {"operation_name": "scale"}]
    Harness(TensorRTInference, {"model_file_path": MODEL, "input_tensor_info": both}).start().stop()


@needs_model
@pytest.mark.parametrize("damage", ["cut", "empty", "text"])
def test_a_damaged_model_file_fails_in_start_in_one_line(model_path, tmp_path, damage):
    """A model cut short by a failed copy, an empty file, or text under a model's name: one line
    naming the file (before: ONNX Runtime's InvalidProtobuf traceback)."""
    from graphflow.models import find_model

    data = find_model(MODEL).read_bytes()
    broken = tmp_path / "openpose_mobilenet_thin.onnx"
    broken.write_bytes({"cut": data[:len(data) // 3], "empty": b"", "text": b"<html>404 Not Found</html>"}[damage])
    with pytest.raises(NodeError) as error:
        Harness(TensorRTInference, {"model_file_path": str(broken), "backend": "onnxruntime"}).start()
    said = str(error.value)
    assert said.startswith(f"model {broken} cannot be loaded (cut short, or not an ONNX model?): ") and "\n" not in said


def test_missing_model_fails_in_start_with_the_search_path(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", str(tmp_path / "empty"))
    with pytest.raises(NodeError, match=r"(?s)not_a_model\.onnx.*empty.*GRAPHFLOW_MODEL_PATH"):
        Harness(TensorRTInference, {"model_file_path": "not_a_model.onnx", "backend": "onnxruntime"}).start()


@needs_model
@pytest.mark.skipif(tensorrt_available()[0], reason="checks the error where TensorRT is missing")
def test_tensorrt_backend_without_gpu_fails_clearly(model_path):
    with pytest.raises(NodeError, match="backend 'tensorrt' is not usable here"):
        Harness(TensorRTInference, {"model_file_path": MODEL, "backend": "tensorrt"}).start()


def test_profile_shapes():
    settings = {"inputs": {}, "dim_range": [32, 368, 1280], "max_batch_size": 4}
    assert profile_shapes("image", (-1, 3, -1, -1), settings) == (
        (1, 3, 32, 32), (1, 3, 368, 368), (4, 3, 1280, 1280))
    assert profile_shapes("image", (1, 3, 224, 224), settings) == ((1, 3, 224, 224),) * 3
    given = {"min_dims": [1, 3, 64, 64], "opt_dims": [1, 3, 368, 432], "max_dims": [1, 3, 736, 1312]}
    assert profile_shapes("image", (-1, 3, -1, -1), dict(settings, inputs={"image": given})) == (
        (1, 3, 64, 64), (1, 3, 368, 432), (1, 3, 736, 1312))


@needs_model
@needs_tensorrt
@pytest.mark.parametrize("mode, atol", [("Float32", 2e-3), ("Float16", 5e-2)])
def test_tensorrt_matches_onnxruntime_and_caches_the_engine(model_path, monkeypatch, tmp_path, mode, atol):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data, image = golden_input()
    config = {"backend": "tensorrt", "inference_mode": mode, "profile_dim_range": [32, 368, 512]}
    _, (built,) = infer(config, image)
    engines = list((tmp_path / "graphflow" / "engines").glob("*.engine"))
    assert len(engines) == 1
    np.testing.assert_allclose(built.payload.get("heatmaps"), data["heatmaps"], atol=atol)
    np.testing.assert_allclose(built.payload.get("pafs"), data["pafs"], atol=atol)
    started = time.monotonic()
    h, (loaded, other) = infer(config, image, image[:, :, :200, :256])
    assert time.monotonic() - started < 20  # loaded from the cache, not rebuilt
    assert list((tmp_path / "graphflow" / "engines").glob("*.engine")) == engines
    np.testing.assert_allclose(loaded.payload.get("heatmaps"), built.payload.get("heatmaps"), atol=1e-5)
    assert other.payload.get("pafs").shape == (1, 38, 25, 32)
    h.feed("input", Tensors(names=["image"], tensors=[np.zeros((1, 3, 600, 600), np.float32)]))
    with pytest.raises(NodeError, match="outside the TensorRT optimization profile"):
        h.run_pending()
