"""int8 post-training static quantisation of an exported model with OpenVINO's NNCF.

Convolutions and fully connected layers get int8 weights (per output channel) and int8
activations whose ranges are measured on calibration images: the user's photos, or by default
synthetic scenes of `densepose synth`. The result is an OpenVINO model (.xml + .bin). CPUs with
VNNI, AVX512-BF16 or AMX run the int8 layers several times faster.

Only OpenVINO IR is written: NNCF's ONNX back end fails on this graph (it finds no statistics
for a RoiAlign that receives no boxes during calibration), see docs/export.md.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import DensePoseError
from ..io.atomic import atomic_path
from ..modeling import DensePoseRCNN
from .onnx_file import export_proto, metadata_of, require
from .runtime import OPENVINO_INFO_KEY, read_openvino

DEFAULT_CALIBRATION_SCENES = 64
SYNTHETIC_CALIBRATION_SEED = 20_000_000  # far from the seeds training and evaluation sets use
# The layers whose outputs decide which proposals survive, which box wins NMS and which part a
# pixel gets are cheap (a few output channels): kept in float32, as fast mode keeps them.
FLOAT_LAYERS = ("objectness_logits", "anchor_deltas", "box_predictor", "densepose_predictor")
# The chart predictor's stride-2 deconvolutions lose their module path in OpenVINO's graph (their
# nodes are named after the operation), so they are kept in float32 by type.
FLOAT_OPERATION_TYPES = ("ConvolutionBackpropData",)
# Operations outside every module (named "/Mul_50", "/Gather_94", ...) are the graph's own glue:
# box decoding, clipping, FPN level assignment, NMS. Left to NNCF, it quantises box coordinates
# and areas to 256 levels (1 px steps on a 256 px input), which moves boxes and switches the FPN
# level a box is pooled from; they cost nothing in float32.
GLUE_NODE = re.compile(r"/[A-Za-z]+(_\d+)?")


def calibration_images(folder: str | os.PathLike | None, count: int) -> Iterable[np.ndarray]:
    """RGB arrays to calibrate on: up to `count` images of `folder`, or `count` synthetic scenes."""
    if folder is None:
        from ..synthetic.scene import render_scene

        return (render_scene(SYNTHETIC_CALIBRATION_SEED + index, 512).image for index in range(count))
    from ..io.images import read_image
    from ..io.inputs import expand_inputs

    items = [item for item in expand_inputs([str(folder)], recursive=True) if item.kind == "image"][:count]
    if not items:
        raise DensePoseError(f"no images to calibrate on in {folder}")
    return (read_image(item.path) for item in items)


def quantize(
    model: DensePoseRCNN,
    output: str | os.PathLike,
    images: Iterable[np.ndarray],
    preprocess: Callable[[np.ndarray], np.ndarray],
) -> Path:
    """Write the int8 model of `model` to `output` (OpenVINO IR: output.xml and output.bin),
    calibrated on `images` (RGB arrays) after `preprocess` (the resize to the model's input)."""
    openvino = require("openvino", "openvino")
    nncf = require("nncf", "openvino")
    logging.getLogger("nncf").setLevel(logging.WARNING)  # its per-layer notes; the progress bars stay
    output = Path(output)
    if output.suffix != ".xml":
        raise DensePoseError(f"an int8 model is written as OpenVINO IR (.xml + .bin), not {output.suffix or 'a file without extension'}")
    proto = export_proto(model)
    config = model.config
    inputs = [
        {
            "image": preprocess(image)[None],
            "score_threshold": np.array(config.score_threshold_test, np.float32),
            "max_detections": np.array(config.detections_per_image, np.int64),
            "given_boxes": np.zeros((0, 4), np.float32),
        }
        for image in images
    ]
    ov_model = read_openvino(proto.SerializeToString())
    scope = nncf.IgnoredScope(names=_float_nodes(op.get_friendly_name() for op in ov_model.get_ops()),
                              types=list(FLOAT_OPERATION_TYPES), validate=False)
    # MIXED: symmetric int8 weights, asymmetric activations (the FPN outputs and the box head's
    # inputs are not ReLU outputs); it matched more people than the default preset (docs/export.md).
    with np.errstate(over="ignore"):  # NNCF's float16 statistics overflow harmlessly on large activations
        quantized = nncf.quantize(ov_model, nncf.Dataset(inputs), subset_size=len(inputs), ignored_scope=scope,
                                  preset=nncf.QuantizationPreset.MIXED)
    for key, value in metadata_of(proto).items():
        quantized.set_rt_info(value, [OPENVINO_INFO_KEY, key])
    # The IR is two files: write both beside the target, then rename the weights and the graph
    # (the weights first, so a reader that finds the .xml finds its .bin).
    with atomic_path(output) as graph, atomic_path(output.with_suffix(".bin")) as weights:
        openvino.save_model(quantized, str(graph), compress_to_fp16=False)
        os.replace(graph.with_suffix(".bin"), weights)
    return output


def _float_nodes(names: Iterable[str]) -> list[str]:
    """The graph nodes to keep in float32: those of FLOAT_LAYERS (node names follow the module
    path) and the glue between modules."""
    pattern = re.compile(r"/(" + "|".join(FLOAT_LAYERS) + r")(_\d+)?/")
    return [name for name in names if pattern.search(name) or GLUE_NODE.fullmatch(name)]
