"""Exported models run by ONNX Runtime or OpenVINO, called like a DensePoseRCNN.

A `RuntimeModel` takes the same arguments as `DensePoseRCNN.forward` and returns the same
`RawDetections`, so `Predictor` keeps its own pre-processing (the resize) and post-processing
(charts to image pixels) whatever runs the network: every output format and render works on
every backend.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import DensePoseError
from ..modeling import DensePoseRCNN, RawDetections
from .onnx_file import export_proto, parse_metadata, read_metadata, require

Backend = Literal["torch", "onnxruntime", "openvino"]
BACKENDS = ("torch", "onnxruntime", "openvino")
RUNTIME_SUFFIXES = (".onnx", ".xml")  # an exported graph; OpenVINO's IR (int8 export) is .xml + .bin
# OpenVINO keeps our metadata in the model's runtime info under this key.
OPENVINO_INFO_KEY = "densepose_torch"

# (inputs by name) -> outputs by name, numpy in and out
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class RuntimeModel:
    """A DensePose R-CNN exported to ONNX (or OpenVINO IR) and run by `backend` on the CPU."""

    device = torch.device("cpu")
    compute_dtype = torch.float32
    channels_last = False

    def __init__(self, config: ModelConfig, name: str, fields: list[str], run: Runner, backend: str):
        self.config = config
        self.name = name
        self.fields = fields
        self.backend = backend
        self._run = run

    def __call__(
        self,
        images: list[torch.Tensor],
        boxes: list[torch.Tensor] | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[RawDetections]:
        """As DensePoseRCNN.forward: (3, H, W) float BGR images, optional boxes per image."""
        threshold = self.config.score_threshold_test if score_threshold is None else score_threshold
        limit = self.config.detections_per_image if max_detections is None else max_detections
        results = []
        for index, image in enumerate(images):
            given = np.zeros((0, 4), np.float32) if boxes is None else boxes[index].detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
            inputs = {
                "image": image.detach().cpu().numpy().astype(np.float32)[None],
                "score_threshold": np.array(threshold, np.float32),
                "max_detections": np.array(limit, np.int64),
                "given_boxes": given,
            }
            outputs = {name: torch.from_numpy(np.asarray(value)) for name, value in self._run(inputs).items()}
            charts = {name: outputs[name] for name in self.fields} if len(outputs["boxes"]) else {}
            results.append(RawDetections(outputs["boxes"], outputs["scores"], charts))
        return results


def onnxruntime_providers(device: torch.device | None) -> list:
    """ONNX Runtime's execution providers for `device`: the CPU's, or CUDA's on that GPU (with the
    CPU's for the operators CUDA lacks); a one-line error when this onnxruntime has no CUDA."""
    if device is None or device.type != "cuda":
        return ["CPUExecutionProvider"]
    ort = require("onnxruntime", "onnx")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DensePoseError("this onnxruntime has no CUDA provider: pip install onnxruntime-gpu (in place of onnxruntime), "
                             "or run the onnxruntime backend on the CPU")
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def _onnxruntime_runner(model: bytes | str, threads: int | None, device: torch.device | None = None) -> Runner:
    ort = require("onnxruntime", "onnx")
    providers = onnxruntime_providers(device)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise to users
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=providers)
    names = [output.name for output in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs)))

    return run


def _openvino_runner(model, threads: int | None, fields: list[str]) -> Runner:
    openvino = require("openvino", "openvino")
    # f32: on CPUs with AVX512-BF16 or AMX, OpenVINO would otherwise compute in bfloat16.
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = openvino.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    # A tensor may carry several names after OpenVINO's conversion; ours is among them.
    wanted = {"boxes", "scores", *fields}
    names = {index: (set(output.get_names()) & wanted).pop() for index, output in enumerate(compiled.outputs)}

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = request.infer(inputs)
        return {names[index]: np.array(results[output]) for index, output in enumerate(compiled.outputs)}

    return run


def _openvino_metadata(model) -> tuple[ModelConfig, str, list[str]]:
    values = {}
    for key in ("format", "config", "name", "outputs"):
        if model.has_rt_info([OPENVINO_INFO_KEY, key]):
            values[key] = model.get_rt_info([OPENVINO_INFO_KEY, key]).astype(str)
    return parse_metadata(values)


def load_runtime_model(model: str | os.PathLike | DensePoseRCNN, backend: Backend = "onnxruntime", threads: int | None = None,
                       device: torch.device | None = None) -> RuntimeModel:
    """A RuntimeModel from an exported file (.onnx, or OpenVINO .xml) or, exported on the fly
    in memory, from a loaded DensePoseRCNN. A CUDA `device` runs ONNX Runtime's CUDA provider
    (onnxruntime-gpu); everything else runs on the CPU."""
    if backend not in ("onnxruntime", "openvino"):
        raise DensePoseError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    cuda = device is not None and device.type == "cuda"
    if cuda and backend != "onnxruntime":
        raise DensePoseError(f"the {backend} backend runs on the CPU here; use --device cpu, or the onnxruntime or torch backend")
    if isinstance(model, DensePoseRCNN):
        proto = export_proto(model)
        config, name, fields = read_metadata(proto)
        source: bytes | str = proto.SerializeToString()
    else:
        path = Path(model)
        if not path.is_file():
            raise DensePoseError(f"no such model file: {path}")
        if path.suffix == ".xml":
            if backend != "openvino":
                raise DensePoseError(f"{path.name} is an OpenVINO model: run it with backend openvino (--backend openvino)")
            ov_model = read_openvino(str(path))
            config, name, fields = _openvino_metadata(ov_model)
            return RuntimeModel(config, name, fields, _openvino_runner(ov_model, threads, fields), backend)
        onnx = require("onnx", "onnx")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf's DecodeError and friends
            raise DensePoseError(f"{path.name} is not a readable ONNX file ({type(error).__name__})") from None
        config, name, fields = read_metadata(proto)
        source = str(path)
    if backend == "openvino":
        ov_model = read_openvino(source)
        return RuntimeModel(config, name, fields, _openvino_runner(ov_model, threads, fields), backend)
    return RuntimeModel(config, name, fields, _onnxruntime_runner(source, threads, device if cuda else None), backend)


def read_openvino(source: bytes | str):
    """An OpenVINO model from a file (.onnx or .xml) or ONNX bytes. OpenVINO reads ONNX from
    files: bytes go through a temporary one, removed once read."""
    openvino = require("openvino", "openvino")
    if isinstance(source, str):
        return openvino.Core().read_model(source)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(source)
        return openvino.Core().read_model(str(path))
