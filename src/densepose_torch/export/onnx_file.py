"""Writing a model as one ONNX file, and reading back what the file says about itself.

The file records the model's architecture (the ModelConfig, as JSON), its name and the order of
its chart outputs in ONNX metadata, so that `load_runtime_model` needs nothing but the file.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import DensePoseError
from ..io.atomic import atomic_write
from ..modeling import DensePoseRCNN
from .graph import INPUT_NAMES, ExportGraph

OPSET = 17  # RoiAlign's output_half_pixel mode needs 16; 17 is what the issue asks as a floor
FORMAT_VERSION = "1"
METADATA_PREFIX = "densepose_torch."
# A small image with room for every FPN level; its content does not matter for tracing.
_EXAMPLE_SIZE = (224, 288)


def require(module: str, extra: str):
    """Import an optional dependency, or say in one line which extra installs it."""
    try:
        return __import__(module)
    except ImportError:
        raise DensePoseError(f"this needs {module}: pip install 'densepose-torch[{extra}]'") from None


def chart_fields(model: DensePoseRCNN) -> list[str]:
    """The raw outputs the model's last DensePose stage produces, in its order."""
    heads = model.roi_heads
    resolution = model.config.pooler_resolution
    with torch.no_grad():
        pooled = torch.zeros((1, model.config.fpn_channels, resolution, resolution), device=model.device)
        return list(heads.branch_outputs(pooled)[-1])


def _float32_cpu_copy(model: DensePoseRCNN) -> DensePoseRCNN:
    if model.compute_dtype != torch.float32 or model.channels_last:
        raise DensePoseError("export the exact model (load_model's), not a fast-mode copy")
    return copy.deepcopy(model).to("cpu").float().eval()


def export_proto(model: DensePoseRCNN, opset: int = OPSET):
    """The ONNX model (an onnx.ModelProto, checked, metadata set) of `model`: float32, one image
    per run."""
    onnx = require("onnx", "onnx")
    cpu_model = _float32_cpu_copy(model)
    fields = chart_fields(cpu_model)
    graph = ExportGraph(cpu_model, fields).eval()
    height, width = _EXAMPLE_SIZE
    generator = torch.Generator().manual_seed(0)
    example = (
        torch.rand((1, 3, height, width), generator=generator) * 255,
        torch.tensor(cpu_model.config.score_threshold_test, dtype=torch.float32),
        torch.tensor(cpu_model.config.detections_per_image, dtype=torch.int64),
        torch.zeros((0, 4)),
    )
    output_names = ["boxes", "scores", *fields]
    dynamic_axes = {"image": {2: "height", 3: "width"}, "given_boxes": {0: "given"}}
    dynamic_axes.update({name: {0: "detections"} for name in output_names})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the tracer's notes on Python numbers taken from shapes
        torch.onnx.export(
            graph, example, buffer, dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
            output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    set_metadata(proto, model_metadata(cpu_model, fields))
    proto.producer_name = "densepose-torch"
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: DensePoseRCNN, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write `model` as one self-contained ONNX file at `path` (atomically) and return the path."""
    data = export_proto(model, opset).SerializeToString()
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def model_metadata(model: DensePoseRCNN, fields: list[str]) -> dict[str, str]:
    """What an exported file records about its model, as strings."""
    return {"format": FORMAT_VERSION, "config": json.dumps(model.config.to_dict()), "name": model.name, "outputs": json.dumps(fields)}


def set_metadata(proto, metadata: dict[str, str]) -> None:
    """Store `metadata` in an ONNX model's metadata_props (keys prefixed with the package name)."""
    kept = [entry for entry in proto.metadata_props if not entry.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value


def metadata_of(proto) -> dict[str, str]:
    """What `set_metadata` stored in an ONNX model (keys without the prefix)."""
    return {entry.key[len(METADATA_PREFIX):]: entry.value for entry in proto.metadata_props if entry.key.startswith(METADATA_PREFIX)}


def read_metadata(proto) -> tuple[ModelConfig, str, list[str]]:
    """The architecture, name and chart output order an exported ONNX file records."""
    return parse_metadata(metadata_of(proto))


def parse_metadata(values: dict[str, str]) -> tuple[ModelConfig, str, list[str]]:
    if values.get("format") != FORMAT_VERSION or not {"config", "name", "outputs"} <= set(values):
        raise DensePoseError("this model file was not written by `densepose export` (or by another format version); export it again")
    return ModelConfig.from_dict(json.loads(values["config"])), values["name"], json.loads(values["outputs"])
