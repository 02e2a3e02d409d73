"""Training losses of DensePose R-CNN, as detectron2 computes them: RPN, box head and the
DensePose chart losses.

DensePose ground truth lives in each person's box scaled to 256 x 256; a ROI is a proposal box,
so points and masks are first mapped from the person's box into the proposal's S x S output
grid. Loss names are detectron2's (loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg,
loss_densepose_S/I/U/V, or loss_densepose_UV with UV confidence).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..data.densepose_coco import DP_MASK_SIZE
from ..modeling import ChartOutputs
from .config import LossConfig

DP_FRAME = float(DP_MASK_SIZE)  # side of the box frame of dp_x, dp_y and dp_masks


def rpn_losses(
    logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, target_deltas: torch.Tensor, batch_size_per_image: int
) -> dict[str, torch.Tensor]:
    """Objectness BCE over the sampled anchors and L1 box regression over the positive ones,
    both summed and divided by batch_size_per_image * images. Shapes: logits and labels
    (N, A), deltas (N, A, 4), target_deltas (P, 4) for the positives (labels == 1) in order."""
    normalizer = batch_size_per_image * logits.shape[0]
    valid = labels >= 0
    objectness = F.binary_cross_entropy_with_logits(logits[valid], labels[valid].to(logits.dtype), reduction="sum")
    localisation = F.l1_loss(deltas[labels == 1], target_deltas, reduction="sum")
    return {"loss_rpn_cls": objectness / normalizer, "loss_rpn_loc": localisation / normalizer}


def box_losses(class_logits: torch.Tensor, deltas: torch.Tensor, classes: torch.Tensor, target_deltas: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy over all sampled ROIs; L1 on the person ROIs' box deltas (`target_deltas`,
    in order of the foreground rows) divided by the number of sampled ROIs."""
    foreground = classes == 0
    regression = F.l1_loss(deltas[foreground], target_deltas, reduction="sum") / max(classes.numel(), 1)
    return {"loss_cls": F.cross_entropy(class_logits, classes), "loss_box_reg": regression}


@dataclass
class DensePoseTargets:
    """Ground truth of the N DensePose ROIs of a batch, and their P points (all images)."""

    est_boxes: torch.Tensor  # (N, 4) XYXY proposal boxes (what was pooled)
    gt_boxes: torch.Tensor  # (N, 4) XYXY box of the matched person
    point_roi: torch.Tensor  # (P,) int64 ROI of each point
    x: torch.Tensor  # (P,) position in the person's box scaled to 256
    y: torch.Tensor  # (P,)
    parts: torch.Tensor  # (P,) int64 1..24 (0 = background point)
    u: torch.Tensor  # (P,)
    v: torch.Tensor  # (P,)
    coarse_segm: torch.Tensor | None  # (N, 256, 256) coarse part maps; None if any ROI lacks one
    keypoints: torch.Tensor | None = None  # (N, 17, 3) the person's keypoints: image x, y, visibility
    dense: DenseTargets | None = None  # every body pixel's truth, for the ROIs of dense sets


@dataclass
class DenseTargets:
    """Dense truth in the box frame of each ROI's person (data.dense_truth); ROIs of sets without
    it have has_dense False (and zero maps): their points train them instead."""

    has_dense: torch.Tensor  # (N,) bool
    parts: torch.Tensor  # (N, D, D) int64, 0 = no supervision
    u: torch.Tensor  # (N, D, D)
    v: torch.Tensor  # (N, D, D)


def pack_densepose_targets(est_boxes: torch.Tensor, gt_boxes: torch.Tensor, instances: list) -> DensePoseTargets:
    """Targets of N ROIs from the InstanceDensePose of each ROI's person (points repeated for
    every ROI of the same person)."""
    device = est_boxes.device

    def cat(name: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.cat([torch.from_numpy(getattr(inst, name)) for inst in instances]).to(device, dtype)

    counts = torch.tensor([len(inst.x) for inst in instances], device=device)
    point_roi = torch.repeat_interleave(torch.arange(len(instances), device=device), counts)
    segms = [inst.coarse_segm for inst in instances]
    coarse = None if any(s is None for s in segms) else torch.from_numpy(np.stack(segms)).to(device)
    return DensePoseTargets(
        est_boxes=est_boxes.detach().float(), gt_boxes=gt_boxes.float(), point_roi=point_roi,
        x=cat("x", torch.float32), y=cat("y", torch.float32), parts=cat("parts", torch.int64),
        u=cat("u", torch.float32), v=cat("v", torch.float32), coarse_segm=coarse, dense=_pack_dense(instances, device),
    )


def _pack_dense(instances: list, device: torch.device) -> DenseTargets | None:
    truths = [getattr(inst, "dense", None) for inst in instances]
    shapes = {t.parts.shape for t in truths if t is not None}
    if not shapes:
        return None
    (shape,) = shapes
    empty = np.zeros(shape, np.float32)

    def stack(name: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.stack([empty if t is None else getattr(t, name) for t in truths])).to(device, dtype)

    has = torch.tensor([t is not None for t in truths], dtype=torch.bool, device=device)
    return DenseTargets(has, stack("parts", torch.int64), stack("u", torch.float32), stack("v", torch.float32))


@dataclass
class PointGrid:
    """Where each point falls on the S x S output grid of its ROI (bilinear corners)."""

    x_lo: torch.Tensor
    x_hi: torch.Tensor
    y_lo: torch.Tensor
    y_hi: torch.Tensor
    w_x: torch.Tensor  # weight of the hi corner along x
    w_y: torch.Tensor
    valid: torch.Tensor  # the point lies inside the proposal box


def _axis_to_grid(v_norm: torch.Tensor, gt_start: torch.Tensor, gt_size: torch.Tensor, est_start: torch.Tensor, est_size: torch.Tensor, size: int):
    v = gt_start + v_norm * gt_size / DP_FRAME  # image coordinate
    valid = (v - est_start >= 0) & (v - est_start < est_size)
    grid = (v - est_start) * size / est_size  # cell i starts at i * est_size / size
    lo = grid.floor().long().clamp(min=0, max=size - 1)
    hi = (lo + 1).clamp(max=size - 1)
    grid = torch.min(hi.to(grid.dtype), grid)
    return lo, hi, grid - lo.to(grid.dtype), valid


def point_grid(targets: DensePoseTargets, size: int) -> PointGrid:
    """detectron2's _linear_interpolation_utilities on both axes."""
    gt = targets.gt_boxes[targets.point_roi]
    est = targets.est_boxes[targets.point_roi]
    x_lo, x_hi, w_x, valid_x = _axis_to_grid(targets.x, gt[:, 0], gt[:, 2] - gt[:, 0], est[:, 0], est[:, 2] - est[:, 0], size)
    y_lo, y_hi, w_y, valid_y = _axis_to_grid(targets.y, gt[:, 1], gt[:, 3] - gt[:, 1], est[:, 1], est[:, 3] - est[:, 1], size)
    return PointGrid(x_lo, x_hi, y_lo, y_hi, w_x, w_y, valid_x & valid_y)


def sample_at_points(maps: torch.Tensor, roi: torch.Tensor, grid: PointGrid, channel: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear values of (N, C, S, S) `maps` at every point: (P, C), or (P,) when `channel`
    picks one channel per point."""
    pick = slice(None) if channel is None else channel
    weights = (
        ((1 - grid.w_x) * (1 - grid.w_y), grid.y_lo, grid.x_lo),
        (grid.w_x * (1 - grid.w_y), grid.y_lo, grid.x_hi),
        ((1 - grid.w_x) * grid.w_y, grid.y_hi, grid.x_lo),
        (grid.w_x * grid.w_y, grid.y_hi, grid.x_hi),
    )
    total = None
    for weight, ys, xs in weights:
        values = maps[roi, pick, ys, xs] if channel is not None else maps[roi, :, ys, xs]
        term = values * (weight if channel is not None else weight[:, None])
        total = term if total is None else total + term
    return total


def resample_coarse_segmentation(segm: torch.Tensor, gt_boxes: torch.Tensor, est_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) coarse labels of the proposal boxes, nearest-sampled from the (N, 256, 256) maps
    of the person boxes: grid_sample(nearest, zeros, align_corners=True) on the grid
    x = x0n + (j / S) * (x1n - x0n), the proposal's edges in the person box's [-1, 1] frame."""
    gt_w = gt_boxes[:, 2] - gt_boxes[:, 0]
    gt_h = gt_boxes[:, 3] - gt_boxes[:, 1]
    x0 = 2 * (est_boxes[:, 0] - gt_boxes[:, 0]) / gt_w - 1
    x1 = 2 * (est_boxes[:, 2] - gt_boxes[:, 0]) / gt_w - 1
    y0 = 2 * (est_boxes[:, 1] - gt_boxes[:, 1]) / gt_h - 1
    y1 = 2 * (est_boxes[:, 3] - gt_boxes[:, 1]) / gt_h - 1
    steps = torch.arange(size, dtype=torch.float32, device=segm.device) / size
    grid_x = x0[:, None, None] + steps[None, None, :] * (x1 - x0)[:, None, None]
    grid_y = y0[:, None, None] + steps[None, :, None] * (y1 - y0)[:, None, None]
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)
    sampled = F.grid_sample(segm[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True)
    return sampled[:, 0].round().long()


def _weighted_sum(terms: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return terms.sum() if weights is None else (terms * weights).sum()


def resample_dense_truth(truth: DenseTargets, gt_boxes: torch.Tensor, est_boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """(parts, u, v), each (N, S, S): the person-box truth at the centres of the proposal's
    S x S output cells (nearest cell of the D x D box frame; outside the person's box: part 0)."""
    frame = truth.parts.shape[-1]
    steps = (torch.arange(size, dtype=torch.float32, device=est_boxes.device) + 0.5) / size

    def cells(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        at = est_boxes[:, lo, None] + steps[None] * (est_boxes[:, hi] - est_boxes[:, lo])[:, None]
        index = torch.floor((at - gt_boxes[:, lo, None]) / (gt_boxes[:, hi] - gt_boxes[:, lo]).clamp(min=1e-6)[:, None] * frame).long()
        return index.clamp(0, frame - 1), (index >= 0) & (index < frame)

    cols, col_ok = cells(0, 2)
    rows, row_ok = cells(1, 3)
    n = torch.arange(est_boxes.shape[0], device=est_boxes.device)[:, None, None]
    r, c = rows[:, :, None], cols[:, None, :]
    inside = row_ok[:, :, None] & col_ok[:, None, :]
    parts = torch.where(inside, truth.parts[n, r, c], torch.zeros((), dtype=truth.parts.dtype, device=est_boxes.device))
    return parts, truth.u[n, r, c], truth.v[n, r, c]


def dense_chart_losses(outputs: ChartOutputs, targets: DensePoseTargets, model: ModelConfig, loss: LossConfig) -> dict[str, torch.Tensor]:
    """I, U and V losses of the ROIs with dense truth: weighted means over their body pixels,
    pixel weight (pixels of its part in the batch) ** -dense_part_balance."""
    dense = targets.dense
    rois = torch.nonzero(dense.has_dense).flatten()
    size = outputs["fine_segm"].shape[-1]
    truth = DenseTargets(dense.has_dense[rois], dense.parts[rois], dense.u[rois], dense.v[rois])
    parts, u_gt, v_gt = resample_dense_truth(truth, targets.gt_boxes[rois], targets.est_boxes[rois], size)
    body = parts > 0
    uv_names = ("loss_densepose_UV",) if model.uv_confidence else ("loss_densepose_U", "loss_densepose_V")
    if not body.any():
        zero = zero_loss(outputs)
        return {name: zero for name in ("loss_densepose_I",) + uv_names}
    part = parts[body]
    counts = torch.bincount(part, minlength=outputs["fine_segm"].shape[1]).float()
    weights = counts[part] ** -loss.dense_part_balance
    weights = weights / weights.sum()

    def at_body(name: str, channel_of_part: bool = True) -> torch.Tensor:
        maps = outputs[name][rois]
        if channel_of_part:
            maps = maps.gather(1, parts[:, None]).squeeze(1)
            return maps[body]
        return maps.permute(0, 2, 3, 1)[body]

    losses = {"loss_densepose_I": (F.cross_entropy(at_body("fine_segm", False), part, reduction="none") * weights).sum() * loss.part_weight}
    u, v = at_body("u"), at_body("v")
    u_gt, v_gt = u_gt[body], v_gt[body]
    if model.uv_confidence is None:
        losses["loss_densepose_U"] = (F.smooth_l1_loss(u, u_gt, beta=1.0, reduction="none") * weights).sum() * loss.dense_uv_weight
        losses["loss_densepose_V"] = (F.smooth_l1_loss(v, v_gt, beta=1.0, reduction="none") * weights).sum() * loss.dense_uv_weight
    elif model.uv_confidence == "iid_iso":
        nll = iid_isotropic_uv_loss(u, v, at_body("sigma_2"), u_gt, v_gt, loss.uv_confidence_epsilon, weights)
        losses["loss_densepose_UV"] = nll * loss.dense_uv_weight
    else:
        nll = independent_anisotropic_uv_loss(u, v, at_body("sigma_2"), at_body("kappa_u"), at_body("kappa_v"), u_gt, v_gt,
                                              loss.uv_confidence_epsilon, weights)
        losses["loss_densepose_UV"] = nll * loss.dense_uv_weight
    return losses


def iid_isotropic_uv_loss(u: torch.Tensor, v: torch.Tensor, sigma_2_raw: torch.Tensor, u_gt: torch.Tensor, v_gt: torch.Tensor, epsilon: float,
                          weights: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian negative log-likelihood, summed (or weighted by `weights`): ½ Σ [log 2π + 2 log σ²
    + |Δ|² / σ²], σ² = softplus(raw) + ε."""
    sigma_2 = F.softplus(sigma_2_raw) + epsilon
    delta = (u - u_gt) ** 2 + (v - v_gt) ** 2
    return _weighted_sum(0.5 * (math.log(2 * math.pi) + 2 * torch.log(sigma_2) + delta / sigma_2), weights)


def independent_anisotropic_uv_loss(
    u: torch.Tensor, v: torch.Tensor, sigma_2_raw: torch.Tensor, kappa_u: torch.Tensor, kappa_v: torch.Tensor,
    u_gt: torch.Tensor, v_gt: torch.Tensor, epsilon: float, weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """NLL with covariance σ²I + rrᵀ, r = (κu, κv), summed (or weighted by `weights`):
    ½ Σ [log 2π + log D + |Δ|² / σ² − (Δ·r)² / D], D = σ²(σ² + |r|²)."""
    sigma_2 = F.softplus(sigma_2_raw) + epsilon
    du, dv = u - u_gt, v - v_gt
    denominator = sigma_2 * (sigma_2 + kappa_u**2 + kappa_v**2)
    along_r = du * kappa_u + dv * kappa_v
    terms = 0.5 * (math.log(2 * math.pi) + torch.log(denominator) + (du**2 + dv**2) / sigma_2 - along_r**2 / denominator)
    return _weighted_sum(terms, weights)


def zero_loss(outputs: ChartOutputs) -> torch.Tensor:
    """0, connected to every output, so that every parameter gets a (zero) gradient (DDP)."""
    return sum(value.sum() for value in outputs.values()) * 0.0


def densepose_losses(outputs: ChartOutputs, targets: DensePoseTargets | None, model: ModelConfig, loss: LossConfig) -> dict[str, torch.Tensor]:
    """The DensePose chart losses of the predictor outputs (N, C, S, S) of the N ROIs."""
    uv_names = ("loss_densepose_UV",) if model.uv_confidence else ("loss_densepose_U", "loss_densepose_V")
    names = ("loss_densepose_I", "loss_densepose_S") + uv_names
    if targets is None or targets.est_boxes.shape[0] == 0:
        zero = zero_loss(outputs)
        return {name: zero for name in names}
    size = outputs["fine_segm"].shape[-1]
    grid = point_grid(targets, size)
    valid = grid.valid
    if targets.dense is not None:  # the points of ROIs with dense truth are not used
        valid = valid & ~targets.dense.has_dense[targets.point_roi]
    foreground = valid & (targets.parts > 0)
    losses = {}

    if valid.any():
        fine = sample_at_points(outputs["fine_segm"], targets.point_roi, grid)
        losses["loss_densepose_I"] = F.cross_entropy(fine[valid], targets.parts[valid]) * loss.part_weight
    else:  # no point inside any proposal (detectron2 would average over nothing: NaN)
        losses["loss_densepose_I"] = zero_loss(outputs)

    if targets.coarse_segm is None:
        losses["loss_densepose_S"] = zero_loss(outputs)
    else:
        with torch.no_grad():
            segm = resample_coarse_segmentation(targets.coarse_segm, targets.gt_boxes, targets.est_boxes, size)
            if model.coarse_segm_channels == 2:
                segm = (segm > 0).long()
        losses["loss_densepose_S"] = F.cross_entropy(outputs["coarse_segm"], segm) * loss.index_weight

    roi, part = targets.point_roi[foreground], targets.parts[foreground]
    fg_grid = PointGrid(*(getattr(grid, name)[foreground] for name in ("x_lo", "x_hi", "y_lo", "y_hi", "w_x", "w_y", "valid")))
    u = sample_at_points(outputs["u"], roi, fg_grid, part)
    v = sample_at_points(outputs["v"], roi, fg_grid, part)
    u_gt, v_gt = targets.u[foreground], targets.v[foreground]
    if model.uv_confidence is None:
        losses["loss_densepose_U"] = F.smooth_l1_loss(u, u_gt, beta=1.0, reduction="sum") * loss.point_weight
        losses["loss_densepose_V"] = F.smooth_l1_loss(v, v_gt, beta=1.0, reduction="sum") * loss.point_weight
    else:
        sigma_2 = sample_at_points(outputs["sigma_2"], roi, fg_grid, part)
        if model.uv_confidence == "iid_iso":
            nll = iid_isotropic_uv_loss(u, v, sigma_2, u_gt, v_gt, loss.uv_confidence_epsilon)
        else:
            kappa_u = sample_at_points(outputs["kappa_u"], roi, fg_grid, part)
            kappa_v = sample_at_points(outputs["kappa_v"], roi, fg_grid, part)
            nll = independent_anisotropic_uv_loss(u, v, sigma_2, kappa_u, kappa_v, u_gt, v_gt, loss.uv_confidence_epsilon)
        losses["loss_densepose_UV"] = nll * loss.point_weight
    if targets.dense is not None and bool(targets.dense.has_dense.any()):
        for name, value in dense_chart_losses(outputs, targets, model, loss).items():
            losses[name] = losses[name] + value
    return losses


def mask_loss(logits: torch.Tensor, targets: DensePoseTargets | None, weight: float) -> torch.Tensor:
    """Cascade mask branch: per-pixel binary cross-entropy (mean) of (N, 1, S, S) logits against
    the person's mask (the coarse part map's foreground) resampled to each ROI as loss S does."""
    if targets is None or targets.est_boxes.shape[0] == 0 or targets.coarse_segm is None:
        return logits.sum() * 0.0
    size = logits.shape[-1]
    with torch.no_grad():
        person = resample_coarse_segmentation(targets.coarse_segm, targets.gt_boxes, targets.est_boxes, size) > 0
    return F.binary_cross_entropy_with_logits(logits[:, 0], person.to(logits.dtype)) * weight


def keypoint_heatmap_targets(keypoints: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask R-CNN's keypoint targets: for (N, K, 3) keypoints and (N, 4) ROI boxes, the index
    y * size + x of the grid cell holding each keypoint (cell i covers [i, i + 1) * box / size;
    a keypoint exactly on the right or bottom edge goes to the last cell), and whether it is
    visible and inside the ROI. Both (N, K)."""
    x0, y0 = boxes[:, 0, None], boxes[:, 1, None]
    x1, y1 = boxes[:, 2, None], boxes[:, 3, None]
    x, y = keypoints[..., 0], keypoints[..., 1]
    col = ((x - x0) * size / (x1 - x0).clamp(min=1e-6)).floor().long()
    row = ((y - y0) * size / (y1 - y0).clamp(min=1e-6)).floor().long()
    col = torch.where(x == x1, torch.full_like(col, size - 1), col)
    row = torch.where(y == y1, torch.full_like(row, size - 1), row)
    valid = (keypoints[..., 2] > 0) & (col >= 0) & (col < size) & (row >= 0) & (row < size)
    return (row.clamp(0, size - 1) * size + col.clamp(0, size - 1)), valid


def keypoint_loss(logits: torch.Tensor, targets: DensePoseTargets | None, weight: float) -> torch.Tensor:
    """Cascade keypoint branch: per keypoint, a softmax over the S x S cells of its heatmap,
    cross-entropy at the cell of the true position; mean over the visible keypoints inside
    their ROI (Mask R-CNN's keypoint loss)."""
    if targets is None or targets.keypoints is None or targets.est_boxes.shape[0] == 0:
        return logits.sum() * 0.0
    size = logits.shape[-1]
    cells, valid = keypoint_heatmap_targets(targets.keypoints, targets.est_boxes, size)
    if not valid.any():
        return logits.sum() * 0.0
    flat = logits.reshape(-1, size * size)
    return F.cross_entropy(flat[valid.reshape(-1)], cells.reshape(-1)[valid.reshape(-1)]) * weight
