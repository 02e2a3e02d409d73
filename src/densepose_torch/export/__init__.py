"""Deploying a model outside PyTorch: one ONNX graph per model (`export_onnx`), run by ONNX
Runtime or OpenVINO (`load_runtime_model`, or `Predictor(..., backend=...)`), and int8
post-training quantisation (`quantize`). docs/export.md describes the graph's contract."""
from .onnx_file import export_onnx
from .runtime import BACKENDS, RuntimeModel, load_runtime_model

__all__ = ["BACKENDS", "RuntimeModel", "export_onnx", "load_runtime_model"]
