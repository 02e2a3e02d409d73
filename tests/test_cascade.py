"""Cross-cascading (model.cascade_mask / cascade_keypoints): the option leaves plain
architectures alone, keypoints follow the augmentation, the mask and keypoint losses equal hand
values, both stages train, and a trained cascade checkpoint loads with load_model and predicts
(from its second stage) through `densepose predict`, keypoints and person masks included."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from densepose_torch import ModelConfig, Predictor, load_model
from densepose_torch.chart_symmetry import FlipSymmetry
from densepose_torch.checkpoint import save_checkpoint
from densepose_torch.cli import main
from densepose_torch.data.densepose_coco import person_from_annotation
from densepose_torch.data.mapper import Augmentation, map_sample
from densepose_torch.data.transforms import resize_flip_keypoints
from densepose_torch.io.npz import read_npz
from densepose_torch.modeling import build_model
from densepose_torch.postprocessing import keypoints_from_heatmaps
from densepose_torch.training.config import train_config_from_dict
from densepose_torch.training.losses import (
    DensePoseTargets,
    keypoint_heatmap_targets,
    keypoint_loss,
    mask_loss,
)
from densepose_torch.training.model import TrainingModel
from densepose_torch.training.trainer import build_training_model, read_metrics, train
from densepose_torch.zoo import ZOO

from .test_training import TINY_MODEL, TWO_STEPS, fixed_batch, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASCADE = dict(TINY_MODEL, cascade_mask=True, cascade_keypoints=True)


def _config(dataset: Path, output: Path, model: dict = CASCADE) -> dict:
    return tiny_config(dataset, output, model=dict(model), solver=dict(TWO_STEPS), checkpoint_period=1)


def test_the_option_is_off_by_default_and_no_zoo_architecture_changes():
    assert not ModelConfig().is_cascade
    for entry in ZOO:
        assert not entry.architecture.is_cascade
    plain = build_model(ModelConfig(**TINY_MODEL)).state_dict()
    cascade = build_model(ModelConfig(**CASCADE)).state_dict()
    assert not any(".tasks." in k or ".cascade." in k for k in plain)
    assert set(plain) < set(cascade)  # the cascade adds modules and renames none
    assert all(plain[k].shape == cascade[k].shape for k in plain)
    assert ModelConfig.from_dict(ModelConfig(**CASCADE).to_dict()) == ModelConfig(**CASCADE)


def test_keypoints_are_read_with_half_pixel_offset_and_follow_resize_and_flip():
    flat = [0.0] * 51
    flat[5 * 3: 5 * 3 + 3] = [10, 20, 2]  # left shoulder
    flat[6 * 3: 6 * 3 + 3] = [30, 22, 1]  # right shoulder
    person = person_from_annotation({"bbox": [0, 0, 40, 40], "keypoints": flat, "num_keypoints": 2})
    assert person.keypoints.shape == (17, 3)
    np.testing.assert_array_equal(person.keypoints[5], [10.5, 20.5, 2])
    assert person.keypoints[0, 2] == 0
    # Image 40 x 80 (h, w) resized to 20 x 40 and mirrored: x -> 40 - x / 2, left and right swap.
    moved = resize_flip_keypoints(person.keypoints[None], (40, 80), (20, 40), flip=True)[0]
    np.testing.assert_allclose(moved[6], [40 - 5.25, 10.25, 2])  # the left shoulder is now the right one
    np.testing.assert_allclose(moved[5], [40 - 15.25, 11.25, 1])
    back = resize_flip_keypoints(moved[None], (20, 40), (40, 80), flip=True)[0]
    np.testing.assert_allclose(back, person.keypoints, atol=1e-5)

    bgr = np.zeros((40, 80, 3), np.uint8)
    sample = map_sample(bgr, (person,), Augmentation((20,), 1000, True, FlipSymmetry()), np.random.default_rng(3))
    assert sample.keypoints.shape == (1, 17, 3)
    flipped = sample.boxes[0, 0] > 0  # the box [0, 40] mirrors to [20, 40] at width 40
    expected = resize_flip_keypoints(person.keypoints[None], (40, 80), (20, 40), flip=bool(flipped))[0]
    np.testing.assert_allclose(sample.keypoints[0], expected)


def test_keypoint_targets_and_loss_against_hand_values():
    boxes = torch.tensor([[0.0, 0.0, 8.0, 4.0]])
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, 0] = torch.tensor([5.0, 1.0, 2.0])  # x cell floor(5 * 4 / 8) = 2, y cell floor(1 * 4 / 4) = 1
    keypoints[0, 1] = torch.tensor([8.0, 4.0, 1.0])  # on the far corner: last cell
    keypoints[0, 2] = torch.tensor([9.0, 1.0, 2.0])  # outside the box
    keypoints[0, 3] = torch.tensor([1.0, 1.0, 0.0])  # not labelled
    cells, valid = keypoint_heatmap_targets(keypoints, boxes, 4)
    assert cells[0, 0] == 1 * 4 + 2 and cells[0, 1] == 15
    assert valid[0].tolist()[:4] == [True, True, False, False] and valid.sum() == 2

    logits = torch.zeros(1, 17, 4, 4)
    logits[0, 0, 1, 2] = 2.0
    targets = DensePoseTargets(boxes, boxes, torch.zeros(0, dtype=torch.int64), *(torch.zeros(0),) * 2,
                               torch.zeros(0, dtype=torch.int64), *(torch.zeros(0),) * 2, None, keypoints)
    # Keypoint 0: softmax of 2 among fifteen zeros; keypoint 1: uniform over 16 cells. Float32
    # against float64 hand values: 1e-6 relative.
    hand = (-(2.0 - math.log(math.exp(2.0) + 15)) + math.log(16)) / 2 * 0.5
    assert keypoint_loss(logits, targets, 0.5).item() == pytest.approx(hand, rel=1e-6)


def test_mask_loss_is_binary_cross_entropy_against_the_resampled_person_mask():
    segm = torch.zeros(1, 256, 256, dtype=torch.uint8)
    segm[0, :, :128] = 3  # the left half of the person box is body
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    targets = DensePoseTargets(boxes, boxes, torch.zeros(0, dtype=torch.int64), *(torch.zeros(0),) * 2,
                               torch.zeros(0, dtype=torch.int64), *(torch.zeros(0),) * 2, segm)
    logits = torch.full((1, 1, 4, 4), 1.0)
    # Half the cells are body (loss log(1 + e^-1)), half background (log(1 + e)).
    hand = 0.5 * (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0)))
    assert mask_loss(logits, targets, 1.0).item() == pytest.approx(hand, rel=1e-6)
    assert mask_loss(logits, None, 1.0).item() == 0.0


def test_both_stages_train_and_every_branch_gets_gradients(tiny_synthetic_set, tmp_path):
    torch.manual_seed(0)
    config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path))
    batch = fixed_batch(config)
    assert any((s.keypoints[..., 2] > 0).any() for s in batch)  # the synthetic set carries keypoints
    model = build_training_model(config)
    network = TrainingModel(model, config.loss)
    losses = network(batch)
    expected = {"loss_densepose_I", "loss_densepose_S", "loss_densepose_U", "loss_densepose_V", "loss_mask", "loss_keypoint"}
    assert expected | {name + "_stage2" for name in expected} <= set(losses)
    assert losses["loss_keypoint"].item() > 0 and losses["loss_mask_stage2"].item() > 0
    sum(losses.values()).backward()
    for name in ("roi_heads.tasks.mask_head", "roi_heads.tasks.keypoint_predictor", "roi_heads.cascade.fuse",
                 "roi_heads.cascade.densepose_predictor", "roi_heads.cascade.tasks.keypoint_head", "roi_heads.densepose_head"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    totals = []
    for _ in range(15):
        losses = network(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert np.mean(totals[-3:]) < 0.7 * totals[0], totals  # a fixed batch must be fitted


def test_inference_uses_the_second_stage():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**CASCADE))
    heads = model.roi_heads
    features = [torch.randn(1, 32, 96 // s, 96 // s) for s in (4, 8, 16, 32, 64)]
    boxes = [torch.tensor([[8.0, 4.0, 60.0, 90.0]])]
    with torch.no_grad():
        outputs = heads.densepose(features, boxes)
        first, second = heads.branch_outputs(heads.pool_densepose_features(features, boxes))
    assert set(outputs) == {"coarse_segm", "fine_segm", "u", "v", "mask", "keypoints"}
    for name, value in outputs.items():
        torch.testing.assert_close(value, second[name], rtol=0, atol=0)
        assert not torch.equal(value, first[name])


def test_trained_cascade_checkpoint_loads_and_predicts_through_the_cli(tiny_synthetic_set, tmp_path):
    final = train(train_config_from_dict(_config(tiny_synthetic_set, tmp_path / "run")), progress=False)
    entries = [e for e in read_metrics(tmp_path / "run" / "metrics.jsonl") if "losses" in e]
    assert {"loss_mask", "loss_keypoint_stage2", "loss_densepose_I_stage2"} <= set(entries[0]["losses"])
    model = load_model(final)
    assert model.config.cascade_mask and model.config.cascade_keypoints
    trained = torch.load(final, weights_only=False)["model"]
    assert all(torch.equal(model.state_dict()[k].float(), v.float()) for k, v in trained.items())
    image = tiny_synthetic_set / "images" / "000000.jpg"
    boxes = np.array([[10.0, 10.0, 70.0, 90.0]])
    direct = Predictor(model).predict_boxes(image, boxes)
    assert len(direct) == 1

    # Random weights detect nothing reliably, so lower the score threshold through a checkpoint
    # with the same weights: what matters is that the CLI builds the cascade and runs it.
    loose = build_model(ModelConfig(**dict(CASCADE, score_threshold_test=0.0)))
    loose.load_state_dict(model.state_dict())
    checkpoint = save_checkpoint(loose, tmp_path / "cascade.pth")
    out = tmp_path / "out"
    code = main(["predict", str(image), "-o", str(out), "--model", str(checkpoint), "--device", "cpu", "--min-score", "0",
                 "--outputs", "npz,json"])
    assert code == 0
    result = read_npz(out / "npz" / "000000.npz")
    expected = Predictor(loose)(image)
    assert len(result) == len(expected) > 0
    np.testing.assert_array_equal(result.charts[0].labels, expected.charts[0].labels)

    # The cascade's keypoints and masks come out with the charts and survive both files.
    assert expected.keypoints is not None and expected.keypoints.shape == (len(expected), 17, 3)
    boxes = expected.boxes[:, None, :]
    assert np.all((expected.keypoints[..., 0] >= boxes[..., 0]) & (expected.keypoints[..., 0] <= boxes[..., 2]))
    assert np.all((expected.keypoints[..., 1] >= boxes[..., 1]) & (expected.keypoints[..., 1] <= boxes[..., 3]))
    assert np.all((expected.keypoints[..., 2] >= 0) & (expected.keypoints[..., 2] <= 1))  # probabilities (0 where float32 underflows)
    np.testing.assert_array_equal(result.keypoints, expected.keypoints)
    for written, chart in zip(result.charts, expected.charts):
        assert chart.mask is not None and chart.mask.dtype == np.bool_ and chart.mask.shape == chart.labels.shape
        np.testing.assert_array_equal(written.mask, chart.mask)
    records = json.loads((out / "json" / "000000.json").read_text())
    assert len(records) == len(expected)
    np.testing.assert_allclose(records[0]["keypoints"], expected.keypoints[0].reshape(-1), rtol=1e-6)
    kept = expected.select([len(expected) - 1])
    np.testing.assert_array_equal(kept.keypoints, expected.keypoints[-1:])


def test_keypoints_are_decoded_at_the_heatmap_peak():
    size, box = 8, torch.tensor([[10.0, 20.0, 50.0, 100.0]])  # 40 x 80 px: cells of 5 x 10 px
    heatmaps = torch.zeros(1, 17, size, size)
    cells = [(k % size, (3 * k) % size) for k in range(17)]  # (row, col) of each keypoint's peak
    for k, (row, col) in enumerate(cells):
        heatmaps[0, k, row, col] = 6.0
    keypoints = keypoints_from_heatmaps(box, heatmaps)
    assert keypoints.shape == (1, 17, 3)
    peak_probability = math.exp(6.0) / (math.exp(6.0) + size * size - 1)
    for k, (row, col) in enumerate(cells):
        x, y, score = keypoints[0, k]
        assert 10 + 5 * col <= x <= 10 + 5 * (col + 1), (k, x)
        assert 20 + 10 * row <= y <= 20 + 10 * (row + 1), (k, y)
        assert score == pytest.approx(peak_probability, rel=1e-5)


def test_an_empty_image_gives_no_keypoints_rather_than_none():
    model = build_model(ModelConfig(**CASCADE)).eval()
    result = Predictor(model).predict_boxes(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 4)))
    assert len(result) == 0 and result.keypoints is not None and result.keypoints.shape == (0, 17, 3)
