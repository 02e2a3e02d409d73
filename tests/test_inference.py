"""Predictor behaviour on a tiny random model: inputs of every kind, batching, user boxes, the
result types, and clear errors for bad input."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from densepose_torch import ChartResult, DensePoseError, DensePoseResult, ModelConfig, Predictor
from densepose_torch.inference import resized_shape
from densepose_torch.modeling import build_model
from densepose_torch.modeling.fast import fast_dtype, fold_frozen_batchnorm
from densepose_torch.modeling.layers import FrozenBatchNorm2d
from densepose_torch.ops.boxes import box_iou
from densepose_torch.postprocessing import integer_boxes

TINY = ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64, min_size_test=64, max_size_test=96)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    model = build_model(TINY)
    with torch.no_grad():  # make random proposals confident people, as the golden weights do
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([4.0, -4.0]))
    return Predictor(model)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    generator = np.random.default_rng(0)
    return generator.integers(0, 256, (90, 120, 3), dtype=np.uint8)


def assert_same_result(a: DensePoseResult, b: DensePoseResult) -> None:
    """Bit for bit: boxes, scores, every chart and its confidence maps."""
    assert a.image_size == b.image_size
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert len(a.charts) == len(b.charts)
    for x, y in zip(a.charts, b.charts):
        assert (x.x, x.y) == (y.x, y.y)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.uv, y.uv)
        assert x.confidences().keys() == y.confidences().keys()
        for name, values in x.confidences().items():
            np.testing.assert_array_equal(values, y.confidences()[name])


def test_result_shapes_and_anchoring(predictor, photo):
    result = predictor(photo)
    assert result.image_size == (90, 120)
    assert len(result) > 0, "the person-biased classifier should detect something"
    assert result.boxes.dtype == np.float32 and result.scores.dtype == np.float32
    assert np.all(np.diff(result.scores) <= 0), "detections come in descending score order"
    assert np.all(result.boxes[:, [0, 2]] <= 120) and np.all(result.boxes[:, [1, 3]] <= 90) and np.all(result.boxes >= 0)
    xywh = integer_boxes(torch.from_numpy(result.boxes)).numpy()
    for chart, (x, y, w, h) in zip(result.charts, xywh):
        assert (chart.x, chart.y) == (x, y)
        assert chart.labels.shape == (h, w) and chart.labels.dtype == np.uint8
        assert chart.uv.shape == (2, h, w) and chart.uv.dtype == np.float32
        assert chart.labels.max() <= 24
        assert np.all(chart.uv[:, chart.labels == 0] == 0), "U, V are 0 at background"


def test_every_input_kind_gives_the_same_result(predictor, photo, tmp_path):
    reference = predictor(photo)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    assert_same_result(predictor(str(path)), reference)
    assert_same_result(predictor(path), reference)
    assert_same_result(predictor(Image.fromarray(photo)), reference)
    assert_same_result(predictor(photo[:, :, ::-1].copy(), channel_order="bgr"), reference)
    rgba = np.concatenate([photo, np.full((90, 120, 1), 7, np.uint8)], axis=2)
    assert_same_result(predictor(rgba), reference)


def test_batch_equals_single_images(predictor, photo):
    other = np.ascontiguousarray(photo[::-1])  # same size: runs as one padded batch
    smaller = photo[:70, :100]  # different size: runs on its own
    batched = predictor.batch([photo, other, smaller])
    for image, result in zip([photo, other, smaller], batched):
        assert_same_result(result, predictor(image))


def test_grayscale_and_16_bit_images_are_handled(predictor, tmp_path):
    gray = np.tile(np.arange(120, dtype=np.uint8)[None], (90, 1)) * 2
    assert predictor(gray).image_size == (90, 120)
    path = tmp_path / "deep.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(path)  # a 16-bit grayscale PNG
    assert Image.open(path).mode.startswith("I")
    assert_same_result(predictor(path), predictor(gray))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 10, 3), np.uint8), "no pixels"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "HxW"),
        ("does/not/exist.jpg", "no such image"),
        (12, "unsupported image input"),
    ],
)
def test_bad_inputs_fail_with_one_line(predictor, bad, message):
    with pytest.raises(DensePoseError, match=message) as error:
        predictor(bad)
    assert "\n" not in str(error.value)


def test_unreadable_files_fail_with_one_line(predictor, photo, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(photo).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path in (text, truncated):
        with pytest.raises(DensePoseError) as error:
            predictor(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_given_boxes(predictor, photo):
    boxes = [[10.5, 5.25, 60.0, 80.0], [70, 20, 119.5, 89.9], [-20, -5, 30, 40], [200, 200, 250, 260]]
    result = predictor.predict_boxes(photo, boxes, scores=[0.9, 0.8, 0.7, 0.6])
    # The box entirely outside the image is dropped; the partly outside one is clipped.
    assert len(result) == 3
    np.testing.assert_allclose(result.boxes[2], [0, 0, 30, 40], atol=1e-4)
    np.testing.assert_array_equal(result.scores, np.float32([0.9, 0.8, 0.7]))
    assert (result.charts[0].x, result.charts[0].y) == (10, 5)
    empty = predictor.predict_boxes(photo, np.zeros((0, 4)))
    assert len(empty) == 0 and empty.charts == []
    with pytest.raises(DensePoseError, match="2 scores for 1 boxes"):
        predictor.predict_boxes(photo, [[0, 0, 10, 10]], scores=[0.5, 0.5])
    with pytest.raises(DensePoseError, match="finite"):
        predictor.predict_boxes(photo, [[0, 0, float("nan"), 10]])


def test_min_score_and_top_person_are_applied_before_the_head(predictor, photo):
    everyone = predictor(photo)
    assert len(everyone) >= 3
    threshold = float(everyone.scores[1] + everyone.scores[2]) / 2
    assert_same_result(predictor(photo, min_score=threshold), everyone.select(everyone.scores > threshold))
    assert_same_result(predictor(photo, top_person=True), everyone.select([0]))
    # Set once on the predictor, overridden per call.
    picky = Predictor(predictor.model, min_score=threshold, top_person=False)
    assert len(picky(photo)) == 2 and len(picky(photo, min_score=0.0)) == len(everyone)
    assert len(Predictor(predictor.model, top_person=True).batch([photo, photo])[1]) == 1
    with pytest.raises(DensePoseError, match="min_score"):
        Predictor(predictor.model, min_score=1.5)
    with pytest.raises(DensePoseError, match="min_score"):
        predictor(photo, min_score=-0.1)


def test_box_voting_moves_boxes_but_keeps_people_and_scores(photo):
    torch.manual_seed(0)
    plain = build_model(TINY)
    with torch.no_grad():  # confident random proposals: many overlapping people to vote
        plain.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([4.0, -4.0]))
    voting = build_model(dataclasses.replace(TINY, box_vote_iou=0.5))
    voting.load_state_dict(plain.state_dict())
    a, b = Predictor(voting)(photo), Predictor(plain)(photo)
    assert len(a) == len(b) > 1
    np.testing.assert_array_equal(a.scores, b.scores)
    iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).diagonal().numpy()
    assert not np.array_equal(a.boxes, b.boxes) and iou.min() >= 0.5, iou


def test_fast_mode_runs_on_its_own_copy(predictor, photo):
    model = predictor.model
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fast = Predictor(model, precision="fast")
    assert fast.precision == "fast" and fast.model is not model
    assert fast.model.compute_dtype == fast_dtype(torch.device("cpu")) and fast.model.channels_last
    assert not any(isinstance(module, FrozenBatchNorm2d) for module in fast.model.modules()), "FrozenBN folded"
    # Scores, box deltas and chart logits come from float32 layers reading the half-precision features.
    assert fast.model.roi_heads.box_predictor.layer.cls_score.weight.dtype == torch.float32
    assert fast.model.roi_heads.densepose_predictor.layer.index_uv_lowres.weight.dtype == torch.float32
    result = fast(photo)
    assert len(result) > 0 and all(chart.labels.max() <= 24 for chart in result.charts)
    # The caller's model is untouched: same parameters, dtype, layout and modules, exact results as before.
    assert model.state_dict().keys() == before.keys()
    for key, value in model.state_dict().items():
        assert value.dtype == before[key].dtype and torch.equal(value, before[key]), key
    assert any(isinstance(module, FrozenBatchNorm2d) for module in model.modules())
    assert_same_result(predictor(photo), Predictor(model)(photo))
    # The earlier names still work.
    assert Predictor(model, precision="bf16").precision == "fast" and Predictor(model, precision="fp32").precision == "exact"


def test_a_predictor_on_another_device_works_on_a_copy(predictor):
    model = predictor.model
    elsewhere = Predictor(model, device="meta")  # any device but the model's own
    assert elsewhere.model is not model and elsewhere.model.device.type == "meta"
    assert model.device.type == "cpu" and predictor.model is model
    assert Predictor(model).model is model, "same device, exact: no copy"


def test_folding_frozen_batchnorm_computes_the_same_function():
    torch.manual_seed(0)
    model = build_model(TINY)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            for buffer in (module.weight, module.bias, module.running_mean):
                buffer.copy_(torch.randn_like(buffer))
            module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
    trunk = model.backbone.bottom_up
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = trunk(image)
        fold_frozen_batchnorm(trunk)
        folded = trunk(image)
    assert not any(isinstance(module, FrozenBatchNorm2d) for module in trunk.modules())
    for a, b in zip(expected, folded):
        # float32 rounding of the scaled weights, amplified through the random trunk's 8 blocks
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_unknown_precision_and_missing_cuda(predictor):
    with pytest.raises(DensePoseError, match="precision"):
        Predictor(predictor.model, precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(DensePoseError, match="CUDA"):
            Predictor(predictor.model, device="cuda")


@pytest.mark.parametrize("size, expected", [((480, 640), (800, 1067)), ((512, 512), (800, 800)), ((100, 1000), (133, 1333)), ((1000, 300), (1333, 400))])
def test_resize_rule(size, expected):
    assert resized_shape(*size, 800, 1333) == expected


def chart(x, y, labels, value):
    labels = np.asarray(labels, np.uint8)
    uv = np.where(labels > 0, value, 0).astype(np.float32)
    return ChartResult(x=x, y=y, labels=labels, uv=np.stack([uv, uv]))


def test_to_dense_higher_score_wins_and_background_never_hides():
    high = chart(0, 0, [[1, 1, 0], [1, 1, 0]], 0.25)
    low = chart(1, 0, [[2, 2, 2], [0, 2, 2]], 0.75)
    result = DensePoseResult((3, 5), np.zeros((2, 4), np.float32), np.float32([0.6, 0.9]), [low, high])
    maps = result.to_dense()
    # `high` (score 0.9, index 1) wins where both have body; `low` shows where `high` is background.
    np.testing.assert_array_equal(maps.I, [[1, 1, 2, 2, 0], [1, 1, 2, 2, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(maps.instance, [[2, 2, 1, 1, 0], [2, 2, 1, 1, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(maps.U[0], np.float32([0.25, 0.25, 0.75, 0.75, 0]))
    assert maps.I.dtype == np.uint8 and maps.instance.dtype == np.uint16 and maps.U.dtype == np.float32


def test_to_dense_clips_charts_at_the_border_and_ties_go_to_the_earlier():
    first = chart(3, 1, [[5, 5], [5, 5]], 0.5)
    second = chart(3, 1, [[6, 6], [6, 6]], 0.5)
    result = DensePoseResult((2, 4), np.zeros((2, 4), np.float32), np.float32([0.7, 0.7]), [first, second])
    maps = result.to_dense()
    np.testing.assert_array_equal(maps.I, [[0, 0, 0, 0], [0, 0, 0, 5]])


def test_select_and_above():
    charts = [chart(0, 0, [[1]], 0.5) for _ in range(3)]
    result = DensePoseResult((1, 1), np.arange(12, dtype=np.float32).reshape(3, 4), np.float32([0.9, 0.5, 0.8]), charts)
    assert len(result.above(0.8)) == 1, "strictly above, as detectron2's test threshold"
    assert len(result.select([])) == 0 and result.select([]).boxes.shape == (0, 4)
    np.testing.assert_array_equal(result.select([2, 0]).scores, np.float32([0.8, 0.9]))
