"""Training losses against hand computations on tiny cases (detectron2's formulas), the point-to-grid
mapping, the coarse-mask resampling, and the trainable RoIAlign."""
from __future__ import annotations

import math

import pytest
import torch

from densepose_torch.config import ModelConfig
from densepose_torch.ops.roi_align import multilevel_roi_align, roi_align
from densepose_torch.training.config import LossConfig
from densepose_torch.training.losses import (
    DensePoseTargets,
    box_losses,
    densepose_losses,
    iid_isotropic_uv_loss,
    independent_anisotropic_uv_loss,
    point_grid,
    resample_coarse_segmentation,
    rpn_losses,
    sample_at_points,
)
from densepose_torch.training.pooling import (
    multilevel_roi_align_trainable,
    roi_align_trainable,
)

# Float32 arithmetic against float64 hand computations: relative agreement to 1e-5.
REL = 1e-5


def _bce(logit: float, label: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_rpn_losses_sum_over_sampled_anchors_divided_by_256_per_image():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [0.0, 1.0, -2.0, 0.3]])
    labels = torch.tensor([[1, 0, -1, 0], [-1, -1, 1, 0]])
    deltas = torch.arange(32, dtype=torch.float32).reshape(2, 4, 4) / 10
    targets = torch.tensor([[0.1, 0.1, 0.1, 0.1], [1.0, 1.0, 1.0, 1.0]])  # positives: (0, 0) and (1, 2)
    losses = rpn_losses(logits, deltas, labels, targets, batch_size_per_image=256)
    cls = _bce(2.0, 1) + _bce(-1.0, 0) + _bce(3.0, 0) + _bce(-2.0, 1) + _bce(0.3, 0)
    loc = sum(abs(d - 0.1) for d in (0.0, 0.1, 0.2, 0.3)) + sum(abs(d - 1.0) for d in (2.4, 2.5, 2.6, 2.7))
    assert losses["loss_rpn_cls"].item() == pytest.approx(cls / 512, rel=REL)
    assert losses["loss_rpn_loc"].item() == pytest.approx(loc / 512, rel=REL)


def test_box_losses_mean_cross_entropy_and_l1_over_all_sampled_rois():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [-1.0, 1.0]])
    classes = torch.tensor([0, 1, 0])
    deltas = torch.tensor([[0.1, 0.2, 0.3, 0.4], [9.0, 9.0, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    targets = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.5, 0.5, 1.0, 1.0]])
    losses = box_losses(logits, deltas, classes, targets)

    def ce(row, label):
        return -row[label] + math.log(sum(math.exp(v) for v in row))

    expected_ce = (ce([2.0, 0.0], 0) + ce([0.5, 1.5], 1) + ce([-1.0, 1.0], 0)) / 3
    assert losses["loss_cls"].item() == pytest.approx(expected_ce, rel=REL)
    assert losses["loss_box_reg"].item() == pytest.approx((1.0 + 0.5 + 0.5) / 3, rel=REL)


def _targets(points, parts, uvs, est=(12.0, 18.0, 42.0, 58.0), gt=(10.0, 20.0, 40.0, 60.0), segm=None) -> DensePoseTargets:
    n = len(points)
    return DensePoseTargets(
        est_boxes=torch.tensor([est]), gt_boxes=torch.tensor([gt]), point_roi=torch.zeros(n, dtype=torch.int64),
        x=torch.tensor([p[0] for p in points]), y=torch.tensor([p[1] for p in points]),
        parts=torch.tensor(parts), u=torch.tensor([uv[0] for uv in uvs]), v=torch.tensor([uv[1] for uv in uvs]),
        coarse_segm=segm,
    )


def test_point_grid_maps_box_frame_points_into_the_proposal_grid():
    # GT box 30 x 40 at (10, 20); proposal 30 x 40 at (12, 18); grid S = 4.
    targets = _targets([(128.0, 128.0), (0.0, 0.0), (255.9, 230.0)], [1, 1, 1], [(0, 0)] * 3)
    grid = point_grid(targets, 4)
    # point 0: image (25, 40) -> (13, 22) in the proposal -> grid (13*4/30, 22*4/40) = (1.7333, 2.2)
    assert (grid.x_lo[0].item(), grid.x_hi[0].item(), grid.y_lo[0].item(), grid.y_hi[0].item()) == (1, 2, 2, 3)
    assert grid.w_x[0].item() == pytest.approx(13 * 4 / 30 - 1, rel=REL)
    assert grid.w_y[0].item() == pytest.approx(0.2, rel=1e-4)
    # point 1: image (10, 20), left of the proposal (x0 = 12): not valid.
    assert grid.valid.tolist() == [True, False, True]
    # point 2: image x = 10 + 255.9 * 30 / 256 = 39.99 -> grid 3.73: lo 3, hi clamped to 3, weight 0.
    assert (grid.x_lo[2].item(), grid.x_hi[2].item(), grid.w_x[2].item()) == (3, 3, 0.0)


def test_sample_at_points_is_bilinear_with_detectron2_corner_weights():
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4) ** 1.5
    targets = _targets([(128.0, 128.0)], [2], [(0.0, 0.0)])
    grid = point_grid(targets, 4)
    wx, wy = grid.w_x[0].item(), grid.w_y[0].item()
    z = maps[0]
    expected = (z[:, 2, 1] * (1 - wx) * (1 - wy) + z[:, 2, 2] * wx * (1 - wy) + z[:, 3, 1] * (1 - wx) * wy + z[:, 3, 2] * wx * wy)
    all_channels = sample_at_points(maps, targets.point_roi, grid)
    torch.testing.assert_close(all_channels[0], expected)
    picked = sample_at_points(maps, targets.point_roi, grid, targets.parts)
    assert picked[0].item() == pytest.approx(expected[2].item(), rel=REL)


def test_coarse_mask_resampling_uses_nearest_on_the_corner_aligned_grid():
    segm = torch.zeros(1, 256, 256, dtype=torch.uint8)
    segm[0, :, :128] = 7  # left half of the person box
    box = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    out = resample_coarse_segmentation(segm, box, box, 4)
    # Sample j reads source column round(j / 4 * 255): 0, 64, 128 (127.5, ties to even), 191.
    assert out[0, 0].tolist() == [7, 7, 0, 0]
    # A proposal shifted half a box to the right reads zeros beyond the person box.
    shifted = resample_coarse_segmentation(segm, box, torch.tensor([[50.0, 0.0, 150.0, 100.0]]), 4)
    assert shifted[0, 0].tolist() == [0, 0, 0, 0] and shifted.dtype == torch.int64
    left = resample_coarse_segmentation(segm, box, torch.tensor([[-50.0, 0.0, 50.0, 100.0]]), 4)
    assert left[0, 0].tolist() == [0, 0, 7, 7]


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_confidence_losses_match_the_gaussian_formulas():
    u, v, s, ku, kv, ug, vg = 0.3, 0.8, -0.5, 0.2, -0.4, 0.5, 0.6

    def t(x):
        return torch.tensor([x])

    sigma2 = _softplus(s) + 0.01
    d2 = (u - ug) ** 2 + (v - vg) ** 2
    iso = 0.5 * (math.log(2 * math.pi) + 2 * math.log(sigma2) + d2 / sigma2)
    assert iid_isotropic_uv_loss(t(u), t(v), t(s), t(ug), t(vg), 0.01).item() == pytest.approx(iso, rel=REL)
    r2 = ku**2 + kv**2
    denominator = sigma2 * (sigma2 + r2)
    along = (u - ug) * ku + (v - vg) * kv
    aniso = 0.5 * (math.log(2 * math.pi) + math.log(denominator) + d2 / sigma2 - along**2 / denominator)
    assert independent_anisotropic_uv_loss(t(u), t(v), t(s), t(ku), t(kv), t(ug), t(vg), 0.01).item() == pytest.approx(aniso, rel=REL)


def _outputs(size: int, channels: dict[str, int], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(1, c, size, size, generator=generator, requires_grad=True) for name, c in channels.items()}


def test_chart_losses_on_points_at_grid_nodes_equal_hand_values():
    # Proposal = GT box = 64 x 64 at the origin, S = 8: box-frame coordinate 32 k is grid node k.
    size = 8
    outputs = _outputs(size, {"coarse_segm": 2, "fine_segm": 25, "u": 25, "v": 25})
    nodes = [(1, 2), (5, 3), (6, 6)]  # (gx, gy)
    parts = [3, 14, 24]
    uvs = [(0.2, 0.9), (0.5, 0.5), (1.0, 0.0)]
    segm = torch.zeros(1, 256, 256, dtype=torch.uint8)
    segm[0, 64:192, 64:192] = 5
    targets = _targets([(32.0 * gx, 32.0 * gy) for gx, gy in nodes], parts, uvs, est=(0, 0, 64, 64), gt=(0, 0, 64, 64), segm=segm)
    weights = LossConfig(index_weight=5.0, part_weight=1.0, point_weight=0.01)
    losses = densepose_losses(outputs, targets, ModelConfig(), weights)

    fine, u, v = outputs["fine_segm"][0].detach(), outputs["u"][0].detach(), outputs["v"][0].detach()
    ce = 0.0
    smooth_u = smooth_v = 0.0
    for (gx, gy), part, (ug, vg) in zip(nodes, parts, uvs):
        logits = fine[:, gy, gx].tolist()
        ce += -logits[part] + math.log(sum(math.exp(x) for x in logits))
        for value, truth, name in ((u[part, gy, gx].item(), ug, "u"), (v[part, gy, gx].item(), vg, "v")):
            d = abs(value - truth)
            term = 0.5 * d * d if d < 1 else d - 0.5
            if name == "u":
                smooth_u += term
            else:
                smooth_v += term
    assert losses["loss_densepose_I"].item() == pytest.approx(ce / 3 * 1.0, rel=REL)
    assert losses["loss_densepose_U"].item() == pytest.approx(smooth_u * 0.01, rel=REL)
    assert losses["loss_densepose_V"].item() == pytest.approx(smooth_v * 0.01, rel=REL)

    # Coarse: node j reads source pixel round(j * 255 / 8) = 0, 32, 64, 96, 128, 159, 191, 223;
    # part 5 covers [64, 192), so nodes 2..6 are body.
    coarse = outputs["coarse_segm"][0].detach()
    body = torch.zeros(size, size, dtype=torch.int64)
    body[2:7, 2:7] = 1
    log_probs = torch.log_softmax(coarse.double(), dim=0)
    expected_s = -log_probs.gather(0, body[None]).mean().item() * 5.0
    assert losses["loss_densepose_S"].item() == pytest.approx(expected_s, rel=REL)

    # Legacy K = 15: the target keeps the part label instead of foreground.
    legacy_outputs = dict(outputs, coarse_segm=_outputs(size, {"coarse_segm": 15}, seed=1)["coarse_segm"])
    legacy = densepose_losses(legacy_outputs, targets, ModelConfig(coarse_segm_channels=15), weights)
    log_probs = torch.log_softmax(legacy_outputs["coarse_segm"][0].detach().double(), dim=0)
    assert legacy["loss_densepose_S"].item() == pytest.approx(-log_probs.gather(0, (body * 5)[None]).mean().item() * 5.0, rel=REL)


def test_uv_confidence_losses_replace_u_and_v():
    size = 8
    outputs = _outputs(size, {"coarse_segm": 2, "fine_segm": 25, "u": 25, "v": 25, "sigma_2": 25})
    targets = _targets([(64.0, 96.0)], [7], [(0.25, 0.75)], est=(0, 0, 64, 64), gt=(0, 0, 64, 64))
    losses = densepose_losses(outputs, targets, ModelConfig(uv_confidence="iid_iso"), LossConfig(point_weight=0.0005))
    assert set(losses) == {"loss_densepose_I", "loss_densepose_S", "loss_densepose_UV"}

    def at(name):
        return outputs[name][0, 7, 3, 2].item()

    sigma2 = _softplus(at("sigma_2")) + 0.01
    d2 = (at("u") - 0.25) ** 2 + (at("v") - 0.75) ** 2
    nll = 0.5 * (math.log(2 * math.pi) + 2 * math.log(sigma2) + d2 / sigma2)
    assert losses["loss_densepose_UV"].item() == pytest.approx(nll * 0.0005, rel=REL)
    assert losses["loss_densepose_S"].item() == 0.0  # no dp_masks: the fake zero loss


def test_no_densepose_data_gives_zero_losses_that_still_reach_every_output():
    outputs = _outputs(8, {"coarse_segm": 2, "fine_segm": 25, "u": 25, "v": 25})
    losses = densepose_losses(outputs, None, ModelConfig(), LossConfig())
    assert set(losses) == {"loss_densepose_I", "loss_densepose_S", "loss_densepose_U", "loss_densepose_V"}
    total = sum(losses.values())
    assert total.item() == 0.0
    total.backward()
    assert all(value.grad is not None and value.grad.abs().sum() == 0 for value in outputs.values())


def test_trainable_roi_align_matches_the_inference_kernel_and_has_gradients():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 13, 17, generator=generator)
    boxes = torch.rand(30, 4, generator=generator) * torch.tensor([20.0, 16.0, 20.0, 16.0]) - 2
    boxes[:, 2:] = boxes[:, :2] + torch.rand(30, 2, generator=generator) * 12
    rois = torch.cat([torch.randint(0, 2, (30, 1), generator=generator).float(), boxes], dim=1)
    for sampling_ratio in (0, 2):
        for aligned in (False, True):
            for scale in (1.0, 0.5):
                expected = roi_align(features, rois, 7, scale, sampling_ratio, aligned)
                # Same samples, another summation order: float32 rounding (values ~1, errors ~1e-6).
                torch.testing.assert_close(roi_align_trainable(features, rois, 7, scale, sampling_ratio, aligned), expected, atol=1e-5, rtol=0)
    levels = [torch.randn(2, 4, 64 // 2**k, 64 // 2**k, generator=generator) for k in range(4)]
    per_image = [torch.tensor([[0.0, 0.0, 250.0, 250.0], [10.0, 10.0, 40.0, 60.0]]), torch.tensor([[5.0, 5.0, 120.0, 200.0]])]
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    torch.testing.assert_close(multilevel_roi_align_trainable(levels, per_image, 7, scales, 2, False),
                               multilevel_roi_align(levels, per_image, 7, scales, 2, False), atol=1e-5, rtol=0)
    # Gradient check in float64 against finite differences (bilinear sampling is piecewise linear).
    small = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    roi = torch.tensor([[0.0, 0.7, 1.3, 5.2, 4.1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align_trainable(f, roi, 3, 1.0, 2, False), (small,))
