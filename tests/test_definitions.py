"""The one home of DensePose facts agrees with the modules that use it, and the helpers that
several layers share (chart windows, part-map overlaps, ground-truth subsets) hold their rules."""
from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

from densepose_torch import definitions
from densepose_torch.config import ModelConfig
from densepose_torch.evaluation import load_ground_truth
from densepose_torch.evaluation.part_maps import left_right_confusion, part_confusion, part_miou
from densepose_torch.modeling import ChartOutputs, build_model
from densepose_torch.results import image_window


def test_the_part_tables_are_consistent():
    assert len(definitions.PART_NAMES) == definitions.NUM_PART_LABELS == definitions.NUM_PARTS + 1
    assert len(definitions.COARSE_PART_NAMES) == definitions.NUM_COARSE_PARTS + 1
    assert list(definitions.PARTS) == list(range(1, 25))
    for fine in definitions.PARTS:
        mirror = definitions.PART_SYMMETRY[fine]
        name = definitions.PART_NAMES[fine]
        if "left" in name or "right" in name:  # a named side mirrors to the other side, same place
            swapped = name.replace("left", "#").replace("right", "left").replace("#", "right")
            assert definitions.PART_NAMES[mirror] == swapped
        else:
            assert mirror == fine and fine in definitions.SELF_SYMMETRIC_PARTS
    assert definitions.NUM_KEYPOINTS == 17 and definitions.KEYPOINT_NAMES[0] == "nose"


def test_chart_outputs_name_every_field_a_model_produces():
    declared = set(typing.get_type_hints(ChartOutputs))
    assert declared == set(definitions.CHART_FIELDS) | set(definitions.CONFIDENCE_FIELDS) | {"mask", "keypoints"}
    config = ModelConfig(depth=18, base_channels=8, fpn_channels=16, head_channels=16, head_convs=1, uv_confidence="indep_aniso",
                         segm_confidence=True, cascade_mask=True, cascade_keypoints=True, pooler_resolution=4)
    model = build_model(config).eval()
    with torch.no_grad():
        pooled = model.roi_heads.densepose(model.backbone(torch.zeros(1, 3, 64, 64)), [torch.tensor([[4.0, 4.0, 40.0, 60.0]])])
    assert set(pooled) <= declared
    assert {name: tuple(pooled[name].shape[1:]) for name in ("fine_segm", "u", "keypoints")} == {
        "fine_segm": (25, 16, 16), "u": (25, 16, 16), "keypoints": (17, 16, 16)}
    assert config.chart_size == 16


@pytest.mark.parametrize(("x", "y", "w", "h"), [(-3, -2, 6, 5), (5, 6, 10, 10), (-20, 0, 5, 5), (0, 0, 8, 6), (7, 5, 1, 1)])
def test_image_window_is_the_overlap_of_box_and_image(x, y, w, h):
    image = np.zeros((6, 8), bool)
    box = np.ones((h, w), bool)
    window = image_window(x, y, w, h, image.shape)
    expected = np.zeros((6 + 2 * 30, 8 + 2 * 30), bool)  # paste on a big canvas, then crop: the slow truth
    expected[30 + y : 30 + y + h, 30 + x : 30 + x + w] = True
    expected = expected[30:36, 30:38]
    if window is None:
        assert not expected.any()
    else:
        image[window.image] = box[window.box]
        np.testing.assert_array_equal(image, expected)


def test_part_miou_and_left_right_confusion_count_pixels():
    truth = np.array([[0, 3, 3, 4], [0, 1, 2, 2]])
    predicted = np.array([[0, 3, 4, 4], [1, 1, 2, 0]])
    confusion = part_confusion(predicted, truth)
    assert confusion.sum() == truth.size and confusion[3, 4] == 1 and confusion[2, 0] == 1
    # parts 1: 1/2, 2: 1/2, 3: 1/2, 4: 1/2 (intersection over union of each part's pixels)
    assert part_miou(confusion) == pytest.approx(0.5)
    pairs = {(a, b): share for a, b, share in left_right_confusion(confusion)}
    assert len(pairs) == 12 and pairs[(3, 4)] == pytest.approx(1 / 3) and pairs[(1, 2)] == 0.0
    assert np.isnan(pairs[(5, 6)])
    assert part_miou(part_confusion(np.zeros(4, int), np.zeros(4, int))) is None


def test_a_ground_truth_cut_to_some_images_keeps_only_their_people():
    dataset = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 10, "width": 10} for i in (1, 2, 3)],
        "annotations": [{"id": k, "image_id": i, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0, "area": 25.0}
                        for k, i in enumerate((1, 2, 2, 3), start=1)],
        "categories": [{"id": 1, "name": "person"}],
    }
    gt = load_ground_truth(dataset)
    cut = gt.only_images([2, 3])
    assert cut.image_ids == [2, 3] and [a["id"] for a in cut.dataset["annotations"]] == [2, 3, 4]
    assert gt.only_images([3, 2, 1]) is gt
