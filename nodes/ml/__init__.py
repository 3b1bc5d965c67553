"""ml: turning images into model input tensors and running models (ONNX Runtime or TensorRT).

Helpers shared by the nodes live in modules starting with ``_`` (the node registry skips them);
``model_path`` finds model files and the user cache folder."""
