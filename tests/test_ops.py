"""RoIAlign, NMS and box arithmetic against slow, obviously correct references (plain Python
loops written straight from the algorithm's definition)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densepose_torch.config import ModelConfig
from densepose_torch.errors import DensePoseError
from densepose_torch.ops.boxes import BoxCoder, box_iou, clip_boxes, nonempty, vote_boxes
from densepose_torch.ops.nms import batched_nms, nms
from densepose_torch.ops.roi_align import level_of_boxes, multilevel_roi_align, roi_align


def reference_roi_align(features, rois, out_size, scale, sampling_ratio, aligned):
    """One bilinear sample at a time, in float32 scalars, exactly as the definition reads."""
    f32 = np.float32
    features = features.numpy()
    _, channels, height, width = features.shape
    output = np.zeros((len(rois), channels, out_size, out_size), np.float32)

    def bilinear(image, y, x):
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return np.zeros(channels, np.float32)
        y, x = max(y, f32(0)), max(x, f32(0))
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_high = y_low = height - 1
            y = f32(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_high = x_low = width - 1
            x = f32(x_low)
        else:
            x_high = x_low + 1
        ly, lx = f32(y - y_low), f32(x - x_low)
        hy, hx = f32(1) - ly, f32(1) - lx
        return hy * hx * image[:, y_low, x_low] + hy * lx * image[:, y_low, x_high] + ly * hx * image[:, y_high, x_low] + ly * lx * image[:, y_high, x_high]

    for r, (b, x1, y1, x2, y2) in enumerate(rois.numpy().astype(np.float32)):
        offset = f32(0.5) if aligned else f32(0)
        sx, sy = f32(x1 * f32(scale)) - offset, f32(y1 * f32(scale)) - offset
        ex, ey = f32(x2 * f32(scale)) - offset, f32(y2 * f32(scale)) - offset
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, f32(1)), max(rh, f32(1))
        bw, bh = rw / f32(out_size), rh / f32(out_size)
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / out_size)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / out_size)
        count = max(gh * gw, 1)
        for ph in range(out_size):
            for pw in range(out_size):
                total = np.zeros(channels, np.float32)
                for iy in range(gh):
                    y = sy + f32(ph) * bh + f32(iy + 0.5) * bh / f32(gh)
                    for ix in range(gw):
                        x = sx + f32(pw) * bw + f32(ix + 0.5) * bw / f32(gw)
                        total = total + bilinear(features[int(b)], f32(y), f32(x))
                output[r, :, ph, pw] = total / f32(count)
    return torch.from_numpy(output)


def random_rois(generator, count, images, height, width, scale):
    """Boxes in input pixels: inside, partly outside, far outside, tiny and degenerate."""
    size_x, size_y = width / scale, height / scale
    x1 = generator.uniform(-0.3 * size_x, 1.1 * size_x, count)
    y1 = generator.uniform(-0.3 * size_y, 1.1 * size_y, count)
    w = generator.exponential(0.3 * size_x, count)
    h = generator.exponential(0.3 * size_y, count)
    w[: count // 8] = 0.0  # degenerate: zero width
    h[count // 8 : count // 4] = generator.uniform(0, 0.5, count // 4 - count // 8)  # thinner than a pixel
    batch = generator.integers(0, images, count)
    return torch.tensor(np.stack([batch, x1, y1, x1 + w, y1 + h], axis=1), dtype=torch.float32)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0, 1])
def test_roi_align_matches_reference(aligned, sampling_ratio):
    generator = np.random.default_rng(7 + sampling_ratio + 10 * aligned)
    features = torch.from_numpy(generator.normal(size=(2, 3, 11, 14)).astype(np.float32))
    rois = random_rois(generator, 48, images=2, height=11, width=14, scale=0.25)
    got = roi_align(features, rois, 5, 0.25, sampling_ratio, aligned)
    expected = reference_roi_align(features, rois, 5, 0.25, sampling_ratio, aligned)
    # Same float32 operations in the same order: only summation-order rounding may differ.
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    assert got.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_box_pools_the_same_bits_alone_or_among_others(dtype):
    # Boxes are pooled in groups of equal sample grids; which other boxes share a call (tall,
    # wide, empty, other images) must not change a single bit of a box's result.
    generator = np.random.default_rng(3)
    features = torch.from_numpy(generator.normal(size=(2, 8, 30, 40)).astype(np.float32)).to(dtype)
    rois = random_rois(generator, 40, images=2, height=30, width=40, scale=0.25)
    rois[-2, 3], rois[-1, 4] = rois[-2, 1] + 150.0, rois[-1, 2] + 110.0  # one wide, one tall box
    together = roi_align(features, rois, 7, 0.25, 0, True)
    for i in range(rois.shape[0]):
        assert torch.equal(roi_align(features, rois[i : i + 1], 7, 0.25, 0, True)[0], together[i]), i


def test_roi_align_empty_and_outside():
    features = torch.randn(1, 4, 8, 8)
    assert roi_align(features, torch.zeros(0, 5), 7, 1.0, 2, False).shape == (0, 4, 7, 7)
    far = torch.tensor([[0, 100.0, 100.0, 120.0, 130.0]])
    assert torch.count_nonzero(roi_align(features, far, 3, 1.0, 2, False)) == 0


def test_multilevel_pooling_uses_the_level_of_each_box():
    # Each level is a constant map equal to its level index: pooled values reveal the level.
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    features = [torch.full((1, 1, 256 // 2**i, 256 // 2**i), float(i)) for i in range(4)]  # a 1024 px input
    boxes = torch.tensor([[0, 0, 50, 50], [0, 0, 120, 120], [0, 0, 224, 224], [0, 0, 500, 500], [10, 10, 10.5, 10.5]], dtype=torch.float32)
    pooled = multilevel_roi_align(features, [boxes], 2, scales, 2, False)
    expected_levels = level_of_boxes(boxes, 2, 5)
    assert expected_levels.tolist() == [0, 1, 2, 3, 0]  # floor(4 + log2(sqrt(area) / 224)), clamped
    for i, level in enumerate(expected_levels.tolist()):
        assert torch.allclose(pooled[i], torch.full_like(pooled[i], float(level)))


def reference_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(iou_one(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def iou_one(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_nms_matches_greedy_reference(seed):
    generator = np.random.default_rng(seed)
    count = 300
    centres = generator.uniform(0, 100, (count, 2))
    sizes = generator.uniform(2, 40, (count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    boxes[:10, 2:] = boxes[:10, :2]  # degenerate (zero-area) boxes never suppress anything
    scores = generator.uniform(0, 1, count).astype(np.float32)
    scores[20:40] = scores[20]  # ties: the lower index comes first
    got = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).tolist()
    assert got == reference_nms(boxes.astype(np.float64).tolist(), scores.tolist(), 0.5)


def test_batched_nms_keeps_groups_apart():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    groups = torch.tensor([0, 1, 0, 1])
    # Box 1 duplicates box 0 but is in another group; box 2 overlaps box 0 in the same group.
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [0, 1, 3]
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), None, 0.5).numel() == 0


def test_nms_long_suppression_chain():
    # Each box overlaps only its neighbours: keep/suppress alternates all along the chain, the
    # worst case for resolving greedy NMS in parallel sweeps.
    x = torch.arange(400, dtype=torch.float32) * 4
    boxes = torch.stack([x, torch.zeros_like(x), x + 10, torch.full_like(x, 10)], dim=1)
    scores = torch.linspace(1, 0.1, 400)
    expected = reference_nms(boxes.double().tolist(), scores.tolist(), 0.3)
    assert nms(boxes, scores, 0.3).tolist() == expected


def test_box_iou_and_clip():
    a = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15]], dtype=torch.float32)
    b = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 8]], dtype=torch.float32)
    iou = box_iou(a, b)
    expected = [[iou_one(p, q) for q in b.tolist()] for p in a.tolist()]
    np.testing.assert_allclose(iou.numpy(), expected, atol=1e-7)
    clipped = clip_boxes(torch.tensor([[-5.0, 2.0, 30.0, 50.0]]), height=40, width=20)
    assert clipped.tolist() == [[0.0, 2.0, 20.0, 40.0]]
    assert nonempty(torch.tensor([[0, 0, 0, 5], [0, 0, 1, 1.0]])).tolist() == [False, True]


def test_box_voting_is_the_score_weighted_mean_of_the_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 30], [50, 50, 60, 60], [5, 5, 5, 5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.3, 0.8, 0.7, 0.6])
    kept = boxes[[0, 3, 4]]
    voted = vote_boxes(kept, boxes, scores, 0.5)
    # box 0 overlaps box 1 at IoU 0.82 and box 2 at 0.33: boxes 0 and 1 vote, 3:1 by score
    expected = (0.9 * boxes[0] + 0.3 * boxes[1]) / 1.2
    np.testing.assert_allclose(voted[0].numpy(), expected.numpy(), atol=1e-6)
    assert voted[1].tolist() == boxes[3].tolist(), "a box nothing overlaps stays"
    assert voted[2].tolist() == boxes[4].tolist(), "a box of zero area (IoU 0 with itself) stays"
    # at a lower threshold box 2 votes too
    np.testing.assert_allclose(vote_boxes(kept[:1], boxes, scores, 0.3)[0].numpy(),
                               ((0.9 * boxes[0] + 0.3 * boxes[1] + 0.8 * boxes[2]) / 2.0).numpy(), atol=1e-6)
    assert vote_boxes(kept[:0], boxes, scores, 0.5).shape == (0, 4)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(DensePoseError, match="box_vote_iou"):
            ModelConfig(box_vote_iou=bad)


def test_box_coder_round_trip_and_clamp():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    generator = torch.Generator().manual_seed(0)
    boxes = torch.rand(50, 2, generator=generator) * 100
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(50, 2, generator=generator) * 50], dim=1)
    targets = boxes + torch.randn(50, 4, generator=generator)
    targets[:, 2:] = torch.maximum(targets[:, 2:], targets[:, :2] + 1)
    np.testing.assert_allclose(coder.decode(coder.encode(boxes, targets), boxes).numpy(), targets.numpy(), atol=1e-3)
    huge = coder.decode(torch.tensor([[0.0, 0.0, 1000.0, 1000.0]]), torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
    # dw, dh clamp at log(1000/16): a 16-pixel box grows to at most 1000 pixels.
    assert huge[0, 2] - huge[0, 0] == pytest.approx(1000.0, rel=1e-5)
