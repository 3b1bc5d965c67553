"""ml.TensorRTInference — runs an ONNX model on TensorRT or ONNX Runtime (Isaac's inference node).

Backends: "tensorrt" builds (first run, tens of seconds) or loads a cached engine and runs it
with CuPy buffers; "onnxruntime" runs the ONNX file directly; "auto" picks TensorRT when it
imports and a CUDA GPU exists, else ONNX Runtime, and falls back to ONNX Runtime with a
warning when TensorRT fails to build or load the engine. Both take any input size the model allows
(TensorRT: within the optimization profile). The model is found through the model search path
(graphflow/models.py); a missing model, a bad tensor name or an unusable backend fails in
start(), before the app runs.

The model runs on one thread of the node's own, whichever worker ticks the node: ONNX Runtime's
thread pool runs slower when the calling thread changes from call to call (measured with 2 graph
workers on 2 cores: 42 → 49 ms per 368×368 inference, and the app no faster than a plain loop).

input_tensor_info / output_tensor_info entries (Isaac's form): {"operation_name": "image",
"dims": [-1, 3, -1, -1]} — operation_name is the model tensor's name; dims (optional, -1 =
any size) is checked against the model and each incoming tensor; "channel" (inputs, optional)
names the incoming tensor; "min_dims"/"opt_dims"/"max_dims" (inputs, optional) set the
TensorRT optimization profile of that input.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from graphflow import Codelet, NodeError, Param, Rx, Tx
from graphflow.packs.vision.messages import Tensors

from ._cuda import to_numpy
from graphflow.models import find_model

INFO_KEYS = {"operation_name", "dims", "channel", "min_dims", "opt_dims", "max_dims"}


class TensorRTInference(Codelet):
    """Runs an ONNX model (TensorRT engine or ONNX Runtime) on each incoming set of tensors."""

    input = Rx(Tensors, "Model input tensors, matched to model inputs by name (or by `channel` in "
                        "input_tensor_info; a lone tensor feeds a lone input); a tensor one axis short "
                        "of the model input gets a batch axis. numpy, or CuPy from a GPU encoder.",
               queue_size=4)
    output = Tx(Tensors, "The outputs named in output_tensor_info (default: all), always numpy (the "
                         "host boundary of device arrays), with the input's transform, source, frame and acqtime.")

    model_file_path = Param(str, doc="ONNX model: a path, or a name found on the model search path "
                                     "($GRAPHFLOW_MODEL_PATH, ./models, the user cache).", live=False)
    engine_file_path = Param(str, "", "TensorRT engine file to load when its key file (<file>.key.json) "
                                      "matches the model, precision, TensorRT, GPU and profile; built there "
                                      "otherwise. Empty = the engine cache in the user cache folder.", live=False)
    backend = Param(str, "auto", "auto (TensorRT when a CUDA GPU and tensorrt exist, else "
                                 "onnxruntime), tensorrt or onnxruntime.",
                    choices=["auto", "tensorrt", "onnxruntime"], live=False)
    input_tensor_info = Param(list, [], "Model inputs: [{operation_name, dims?, channel?, min_dims?, "
                                        "opt_dims?, max_dims?}]; empty = all, by the model's names.", live=False)
    output_tensor_info = Param(list, [], "Model outputs to publish: [{operation_name, dims?}]; empty = all.", live=False)
    inference_mode = Param(str, "Float16", "TensorRT precision: Float16 or Float32 (ONNX Runtime runs "
                                           "the model as stored).", choices=["Float16", "Float32"], live=False)
    max_workspace_size = Param(int, 1 << 30, "TensorRT builder workspace, bytes.", range=(1 << 20, None), live=False)
    max_batch_size = Param(int, 1, "TensorRT profile: largest batch of a dynamic batch axis.", range=(1, None), live=False)
    profile_dim_range = Param(list, [32, 368, 1280], "TensorRT profile [min, opt, max] of every other "
                                                     "dynamic axis (e.g. H and W).", live=False)
    onnxruntime_providers = Param(list, ["CPUExecutionProvider"], "ONNX Runtime execution providers, "
                                                                  "in order of preference.", live=False)
    intra_op_threads = Param(int, 0, "ONNX Runtime threads per operator; 0 = its default.", range=(0, None), live=False)

    def start(self):
        if len(self.profile_dim_range) != 3 or not all(isinstance(v, int) for v in self.profile_dim_range):
            raise NodeError(f"profile_dim_range must be three ints [min, opt, max], "
                             f"got {self.profile_dim_range}")
        self._inputs = self._parse_info(self.input_tensor_info, "input_tensor_info")
        self._outputs = self._parse_info(self.output_tensor_info, "output_tensor_info")
        try:
            model = find_model(self.model_file_path)
        except FileNotFoundError as missing:  # the message says where it looked and what to do
            raise NodeError(str(missing)) from None
        try:
            self.model = self._make_backend(model)
        except ValueError as unusable:  # a setting this machine cannot honour (e.g. its providers)
            raise NodeError(str(unusable)) from None
        self._check_names(self._inputs, self.model.inputs, "input")
        self._check_names(self._outputs, self.model.outputs, "output")
        unfed = sorted(set(self.model.inputs) - set(self._inputs)) if self._inputs else []
        if unfed:  # every input is fed by name, or (no input_tensor_info) the model's own names
            raise NodeError(f"input_tensor_info lists {sorted(self._inputs)} but the model also needs "
                            f"{unfed}: list every input")
        self._feed_order = list(self._inputs) or list(self.model.inputs)
        self._output_names = list(self._outputs) or list(self.model.outputs)
        self.log.debug("%s: %s backend, model %s", self.full_name, self.model.name, model)
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.full_name)
        self.tick_on_message(self.input)

    def stop(self):
        if hasattr(self, "_runner"):
            self._runner.shutdown()

    def tick(self):
        message = self.input.read()
        tensors = message.payload
        feeds = {name: self._feed(name, tensors) for name in self._feed_order}
        outputs = self._runner.submit(self.model.run, feeds, self._output_names).result()
        for name, array in zip(self._output_names, outputs):
            _check_dims(array.shape, self._outputs.get(name, {}).get("dims"), f"output {name!r}")
        self.output.publish(Tensors(names=list(self._output_names), tensors=[to_numpy(a) for a in outputs],
                                    transform=tensors.transform, source=tensors.source, frame=tensors.frame),
                            acqtime=message.acqtime)

    # -- helpers ---------------------------------------------------------------------------------
    def _make_backend(self, model):
        from ._onnxruntime_backend import OnnxRuntimeBackend
        from ._tensorrt_backend import TensorRTBackend, tensorrt_available

        use_tensorrt = self.backend == "tensorrt"
        if self.backend == "auto":
            use_tensorrt, why_not = tensorrt_available()
            if not use_tensorrt:
                self.log.debug("%s: using onnxruntime (%s)", self.full_name, why_not)
        elif use_tensorrt:
            ok, why_not = tensorrt_available()
            if not ok:
                raise NodeError(f"backend 'tensorrt' is not usable here: {why_not}; "
                                   f"use backend 'onnxruntime' or 'auto'")
        if use_tensorrt:
            settings = {"inputs": {name: {k: v for k, v in info.items() if k.endswith("_dims")}
                                   for name, info in self._inputs.items()},
                        "dim_range": list(self.profile_dim_range), "max_batch_size": self.max_batch_size}
            try:
                return TensorRTBackend(model, engine_file=self.engine_file_path,
                                       fp16=self.inference_mode == "Float16",
                                       max_workspace_size=self.max_workspace_size, profile_settings=settings)
            except Exception as exc:  # an old driver, out of memory, a parse or build error
                if self.backend == "tensorrt":
                    raise NodeError(f"TensorRT cannot run {model.name}: "
                                       f"{type(exc).__name__}: {exc}") from exc
                self.log.warning("%s: TensorRT cannot run %s (%s: %s); using onnxruntime instead",
                                 self.full_name, model.name, type(exc).__name__, exc)
        if self.inference_mode == "Float16":
            self.log.debug("%s: onnxruntime runs the model in its stored precision (inference_mode "
                          "Float16 applies to TensorRT)", self.full_name)
        return OnnxRuntimeBackend(model, list(self.onnxruntime_providers), self.intra_op_threads)

    def _parse_info(self, entries: list, param: str) -> dict[str, dict]:
        parsed = {}
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("operation_name"), str):
                raise NodeError(f"{param}[{index}] must be an object with a string "
                                 f"'operation_name', got {entry!r}")
            unknown = set(entry) - INFO_KEYS
            if unknown:
                raise NodeError(f"{param}[{index}] has unknown keys {sorted(unknown)} "
                                 f"(allowed: {sorted(INFO_KEYS)})")
            parsed[entry["operation_name"]] = entry
        return parsed

    def _check_names(self, wanted: dict, model_side: dict, kind: str) -> None:
        for name, info in wanted.items():
            if name not in model_side:
                raise NodeError(f"the model has no {kind} {name!r} "
                                 f"(its {kind}s: {sorted(model_side)})")
            model_dims = model_side[name][0] if kind == "input" else model_side[name]
            dims = info.get("dims")
            if dims is not None and (len(dims) != len(model_dims) or any(
                    d >= 0 and m >= 0 and d != m for d, m in zip(dims, model_dims))):
                raise NodeError(f"{kind} {name!r} dims {list(dims)} do not fit "
                                 f"the model's {list(model_dims)} (-1 = dynamic)")

    def _feed(self, name: str, tensors: Tensors):
        channel = self._inputs.get(name, {}).get("channel", name)
        if channel in tensors.names:
            array = tensors.get(channel)
        elif len(tensors.names) == 1 and len(self._feed_order) == 1:
            array = tensors.tensors[0]
        else:
            raise NodeError(f"no tensor {channel!r} for model input {name!r} "
                           f"(received: {tensors.names})")
        model_dims, dtype = self.model.inputs[name]
        if array.ndim == len(model_dims) - 1:
            array = array[None]
        _check_dims(array.shape, self._inputs.get(name, {}).get("dims", model_dims), f"input {name!r}")
        # The model's own fixed sizes too (input_tensor_info may say -1 where the model says 640):
        _check_dims(array.shape, model_dims, f"input {name!r} (the model's fixed sizes)")
        return array if array.dtype == dtype else array.astype(dtype)


def _check_dims(shape, dims, what: str) -> None:
    if dims is None:
        return
    if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape)):
        raise NodeError(f"{what} has shape {list(shape)}, expected {list(dims)} (-1 = any)")
