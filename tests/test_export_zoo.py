"""Every zoo architecture exports and runs on ONNX Runtime (slow: about half a minute each).

Weights are PyTorch's random initialisation with the box classifier biased towards "person", so
that proposals become detections; images are 320 px and at most 5 people, to keep the sweep short.
Tolerances as tests/test_export.py's for random weights: the same people, scores within 1e-4,
and charts on the same boxes agreeing on >= 99.5 % of pixels with U/V within 2e-3 of the U/V scale.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from densepose_torch import Predictor
from densepose_torch.export import export_onnx
from densepose_torch.modeling import build_model
from densepose_torch.zoo import ZOO

from .test_export import LABEL_AGREEMENT, UV_TOL, assert_same_detections, chart_agreement, golden_image

pytest.importorskip("onnxruntime", reason="pip install 'densepose-torch[onnx]'")


@pytest.mark.slow
@pytest.mark.parametrize("name", [model.name for model in ZOO])
def test_zoo_architecture_exports(name, tmp_path):
    from densepose_torch.zoo import get_zoo_model

    config = dataclasses.replace(get_zoo_model(name).architecture, min_size_test=320, max_size_test=480, detections_per_image=5)
    torch.manual_seed(0)
    model = build_model(config, name)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([4.0, -4.0]))
    exact = Predictor(model)
    other = Predictor(export_onnx(model, tmp_path / f"{name}.onnx"))
    photo = golden_image("astronaut")
    found = other(photo)
    assert_same_detections(exact(photo), found, median_box_tol=0.01)
    labels, uv = chart_agreement(exact.predict_boxes(photo, found.boxes), found, relative=True)
    assert labels >= LABEL_AGREEMENT and uv <= UV_TOL, (labels, uv)
    np.testing.assert_array_equal(other.predict_boxes(photo, found.boxes[:2]).boxes, exact.predict_boxes(photo, found.boxes[:2]).boxes)
