"""RoIAlign with torchvision's exact semantics, in plain torch.

Every output bin averages a grid of bilinear samples. Sample positions follow torchvision's CPU
kernel: a sample more than one pixel outside the map contributes 0, one within a pixel of the
border is clamped onto it. The sampling itself runs through `grid_sample` (border padding gives
the clamping, a mask gives the zeros), all boxes of an image at once.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Bound on the samples grid_sample handles per call (boxes x bins x samples), to cap memory.
_MAX_SAMPLES_PER_CALL = 1 << 20


def _sample_grid(
    start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (R, bins * max_grid) of the samples along one axis, and a weight per sample
    that is 1 / grid for the first `grid` samples of each bin and 0 for padding samples."""
    device = start.device
    bin_index = torch.arange(bins, device=device, dtype=start.dtype)[:, None]
    sample_index = torch.arange(max_grid, device=device, dtype=start.dtype)[None, :]
    grid_f = grid.to(start.dtype)[:, None, None]
    coords = (
        start[:, None, None]
        + bin_index[None] * bin_size[:, None, None]
        + (sample_index[None] + 0.5) * bin_size[:, None, None] / grid_f
    )
    used = sample_index[None] < grid_f
    weight = torch.where(used, 1.0 / grid_f, torch.zeros((), dtype=start.dtype, device=device))
    inside = (coords >= -1.0) & (coords <= limit)
    weight = weight * inside
    return coords.reshape(start.shape[0], -1), weight.reshape(start.shape[0], -1)


def _normalise(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Map pixel coordinates to grid_sample's [-1, 1] (align_corners=True); clamping to the
    border pixel is left to padding_mode="border", as torchvision clamps."""
    if size == 1:
        return torch.zeros_like(coords)
    return coords * (2.0 / (size - 1)) - 1.0


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """Pool (R, 5) rois [batch index, x1, y1, x2, y2] (input-image pixels) from (N, C, H, W)
    features into (R, C, PH, PW). `sampling_ratio` <= 0 means ceil(roi size / bins) samples per
    bin, per box; `aligned` shifts boxes by half a pixel (detectron2's ROIAlignV2)."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    num_rois = rois.shape[0]
    _, channels, height, width = features.shape
    output = features.new_zeros((num_rois, channels, out_h, out_w))
    if num_rois == 0:
        return output

    rois = rois.to(features.dtype if features.dtype == torch.float64 else torch.float32)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    x2 = rois[:, 3] * spatial_scale - offset
    y2 = rois[:, 4] * spatial_scale - offset
    roi_w = x2 - x1
    roi_h = y2 - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / out_w
    bin_h = roi_h / out_h
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).to(torch.int64)
        grid_w = torch.ceil(roi_w / out_w).to(torch.int64)
    # A box with no samples in some direction (empty box) averages over max(count, 1) = 1 sample
    # of nothing, which is 0: zero weights express that.
    max_gh = max(int(grid_h.max()), 1)
    max_gw = max(int(grid_w.max()), 1)

    ys, wy = _sample_grid(y1, bin_h, out_h, grid_h, max_gh, height)
    xs, wx = _sample_grid(x1, bin_w, out_w, grid_w, max_gw, width)
    ys_norm = _normalise(ys, height)
    xs_norm = _normalise(xs, width)

    samples_per_roi = out_h * max_gh * out_w * max_gw
    chunk = max(1, _MAX_SAMPLES_PER_CALL // samples_per_roi)
    batch_index = rois[:, 0].to(torch.int64)
    for image in torch.unique(batch_index).tolist():
        members = torch.nonzero(batch_index == image).flatten()
        feature = features[image : image + 1]
        for start in range(0, members.numel(), chunk):
            idx = members[start : start + chunk]
            n = idx.numel()
            gy = ys_norm[idx][:, :, None].expand(n, out_h * max_gh, out_w * max_gw)
            gx = xs_norm[idx][:, None, :].expand(n, out_h * max_gh, out_w * max_gw)
            grid = torch.stack((gx, gy), dim=-1).reshape(1, n * out_h * max_gh, out_w * max_gw, 2)
            sampled = F.grid_sample(feature, grid.to(feature.dtype), mode="bilinear", padding_mode="border", align_corners=True)
            sampled = sampled.reshape(channels, n, out_h, max_gh, out_w, max_gw)
            weight = (wy[idx].reshape(n, out_h, max_gh)[:, :, :, None, None] * wx[idx].reshape(n, 1, 1, out_w, max_gw))
            pooled = (sampled * weight[None].to(sampled.dtype)).sum(dim=(3, 5))
            output[idx] = pooled.permute(1, 0, 2, 3)
    return output


def level_of_boxes(boxes: torch.Tensor, min_level: int, max_level: int, canonical_size: float = 224.0, canonical_level: int = 4) -> torch.Tensor:
    """FPN level of each box by detectron2's rule: floor(4 + log2(sqrt(area) / 224 + 1e-8))."""
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size + 1e-8))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


def multilevel_roi_align(
    features: list[torch.Tensor],
    boxes: list[torch.Tensor],
    output_size: int,
    scales: list[float],
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """detectron2's ROIPooler: each box is pooled from the level its size selects.
    `boxes` holds one (Ri, 4) tensor per image; the output rows follow that order."""
    rois = torch.cat(
        [torch.cat((torch.full((b.shape[0], 1), float(i), dtype=b.dtype, device=b.device), b), dim=1) for i, b in enumerate(boxes)],
        dim=0,
    ) if boxes else features[0].new_zeros((0, 5))
    if len(features) == 1:
        return roi_align(features[0], rois, output_size, scales[0], sampling_ratio, aligned)
    min_level = int(round(-math.log2(scales[0])))
    max_level = int(round(-math.log2(scales[-1])))
    levels = level_of_boxes(rois[:, 1:], min_level, max_level)
    output = features[0].new_zeros((rois.shape[0], features[0].shape[1], output_size, output_size))
    for level, (feature, scale) in enumerate(zip(features, scales)):
        members = torch.nonzero(levels == level).flatten()
        if members.numel():
            output[members] = roi_align(feature, rois[members], output_size, scale, sampling_ratio, aligned)
    return output
