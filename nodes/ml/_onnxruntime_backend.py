"""ONNX Runtime backend of ml.TensorRTInference: any input size the model allows, CPU or any
execution provider onnxruntime offers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._cuda import to_numpy

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def _dims(shape) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model: Path, providers: list[str], intra_op_threads: int = 0):
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"onnxruntime providers {missing} are not available here "
                             f"(available: {available})")
        options = ort.SessionOptions()
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        # Idle ORT threads spin for a while by default; in a graph the other nodes need those
        # cores between inferences, so let them sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as exc:  # ONNX Runtime's own types (InvalidProtobuf, Fail, InvalidGraph ...)
            said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"model {model} cannot be loaded (cut short, or not an ONNX model?): {said}") from None
        self.inputs = {i.name: (_dims(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()}
        self.outputs = {o.name: _dims(o.shape) for o in self.session.get_outputs()}

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        return self.session.run(output_names, {name: to_numpy(a) for name, a in feeds.items()})
