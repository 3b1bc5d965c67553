"""An app of io.ImageLoader → ml.ColorCameraEncoder → ml.TensorRTInference (onnxruntime) →
a tiny collecting pack, run by graphflow.app.App to completion."""
import json
import math

import pytest

from graphflow.app import App
from tests.conftest import DATA, MODELS

BUS = DATA / "images" / "bus.jpg"

COLLECTOR = '''
from graphflow import Codelet, Rx
from graphflow.packs.vision.messages import Tensors


class Collector(Codelet):
    """Keeps every Tensors message it receives."""
    tensors = Rx(Tensors, "Anything.", policy="block")

    def start(self):
        self.received = []
        self.tick_on_message(self.tensors)

    def tick(self):
        self.received.append(self.tensors.read())
'''


@pytest.mark.skipif(not (MODELS / "openpose_mobilenet_thin.onnx").exists() or not BUS.exists(),
                    reason="shared model or image not present")
def test_loader_encoder_inference_app_runs_to_completion(tmp_path, model_path):
    (tmp_path / "collect.py").write_text(COLLECTOR)
    app_file = tmp_path / "encode_infer.app.json"
    app_file.write_text(json.dumps({
        "name": "encode_infer",
        "modules": ["io", "ml", "collect.py"],
        "graph": {
            "nodes": [
                {"name": "feeder", "components": [{"name": "loader", "type": "io.ImageLoader"}]},
                {"name": "encoder", "components": [{"name": "encoder", "type": "ml.ColorCameraEncoder"}]},
                {"name": "inference", "components": [{"name": "model", "type": "ml.TensorRTInference"}]},
                {"name": "sink", "components": [{"name": "collector", "type": "collect.Collector"}]},
            ],
            "edges": [
                {"source": "feeder/loader/color", "target": "encoder/encoder/rgb_image"},
                {"source": "encoder/encoder/tensor", "target": "inference/model/input"},
                {"source": "inference/model/output", "target": "sink/collector/tensors"},
            ],
        },
        "config": {
            "feeder": {"loader": {"path": str(BUS), "tick_period": "20Hz"}},
            "encoder": {"encoder": {"rows": 368, "keep_aspect_ratio": True}},
            "inference": {"model": {"model_file_path": "openpose_mobilenet_thin.onnx",
                                    "backend": "onnxruntime", "intra_op_threads": 2}},
        },
    }))
    app = App.load(app_file, workers=2)
    app.run(duration=60)
    assert app.failure is None, str(app.failure)
    received = app.component("sink/collector").received
    assert len(received) == 1
    out = received[0].payload
    width = 280  # 810 × 368 / 1080 = 276 → rounded to a multiple of 8
    assert out.get("heatmaps").shape == (1, 19, 46, math.ceil(width / 8))
    assert out.get("pafs").shape == (1, 38, 46, math.ceil(width / 8))
    assert out.source == str(BUS) and out.transform.image_width == 810
