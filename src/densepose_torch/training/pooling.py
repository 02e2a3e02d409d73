"""RoIAlign that gradients flow through, for training (ops.roi_align is the bit-exact inference
kernel and writes into preallocated buffers, which autograd cannot follow).

RoIAlign's bilinear sample clamps a position in [-1, 0) to 0 and one in [size - 1, size] to the
last pixel, and reads 0 further out. That is `grid_sample(padding_mode="border",
align_corners=True)` times an "inside [-1, size]" mask, so every bin is that sampling averaged
over its grid of sample points. Values agree with ops.roi_align up to float rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops.roi_align import pack_rois, pooling_levels


def _axis_positions(start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, bins * max_grid) sample positions along one axis, and which of them exist (a box with
    an adaptive grid smaller than `max_grid` has fewer)."""
    bin_size = length / bins
    bin_index = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    sample = torch.arange(max_grid, device=start.device)[None, None, :]
    step = bin_size[:, None, None] / grid.clamp(min=1)[:, None, None]  # an empty box's grid is 0: no samples
    positions = start[:, None, None] + bin_index * bin_size[:, None, None] + (sample + 0.5) * step
    exists = (sample < grid[:, None, None]).expand(-1, bins, -1)
    return positions.reshape(len(start), -1), exists.reshape(len(start), -1)


def roi_align_trainable(
    features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> torch.Tensor:
    """(R, C, P, P) pooled features of (R, 5) rois [batch index, x1, y1, x2, y2] from
    (N, C, H, W) features; arguments as ops.roi_align."""
    num_rois = rois.shape[0]
    _, channels, height, width = features.shape
    if num_rois == 0:
        return features.new_zeros((0, channels, output_size, output_size))
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32  # half precision samples in float32
    features = features.to(dtype)
    rois = rois.detach().to(dtype)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=dtype, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / output_size)
        grid_w = torch.ceil(roi_w / output_size)
    max_gh, max_gw = max(int(grid_h.max()), 1), max(int(grid_w.max()), 1)
    ys, y_exists = _axis_positions(y1, roi_h, output_size, grid_h, max_gh)  # (R, P * gh)
    xs, x_exists = _axis_positions(x1, roi_w, output_size, grid_w, max_gw)  # (R, P * gw)
    inside = (y_exists & (ys >= -1.0) & (ys <= height))[:, :, None] & (x_exists & (xs >= -1.0) & (xs <= width))[:, None, :]
    # align_corners=True: -1 and +1 are the centres of the first and last pixel.
    gy = ys / max(height - 1, 1) * 2.0 - 1.0
    gx = xs / max(width - 1, 1) * 2.0 - 1.0
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (R, P*gh, P*gw, 2)
    image_of_roi = rois[:, 0].to(torch.int64)
    chunks, order = [], []
    for image in torch.unique(image_of_roi).tolist():
        members = torch.nonzero(image_of_roi == image).flatten()
        rows = grid[members].reshape(1, -1, grid.shape[2], 2)  # all boxes of the image stacked vertically
        sampled = F.grid_sample(features[image : image + 1], rows, mode="bilinear", padding_mode="border", align_corners=True)
        chunks.append(sampled.reshape(channels, len(members), *grid.shape[1:3]).transpose(0, 1))
        order.append(members)
    output = _in_roi_order(chunks, order) * inside[:, None].to(dtype)
    summed = output.reshape(num_rois, channels, output_size, max_gh, output_size, max_gw).sum(dim=(3, 5))
    count = (grid_h * grid_w).clamp(min=1).to(summed.dtype)
    return summed / count[:, None, None, None]


def multilevel_roi_align_trainable(
    features: list[torch.Tensor], boxes: list[torch.Tensor], output_size: int, scales: list[float], sampling_ratio: int, aligned: bool
) -> torch.Tensor:
    """detectron2's ROIPooler (each box pooled from the FPN level its size selects), trainable."""
    rois = pack_rois(boxes, features[0], torch.float32)
    if len(features) == 1:
        return roi_align_trainable(features[0], rois, output_size, scales[0], sampling_ratio, aligned)
    levels = pooling_levels(rois[:, 1:], scales)
    chunks, order = [], []
    for level, (feature, scale) in enumerate(zip(features, scales)):
        members = torch.nonzero(levels == level).flatten()
        if members.numel():
            chunks.append(roi_align_trainable(feature, rois[members], output_size, scale, sampling_ratio, aligned))
            order.append(members)
    return _in_roi_order(chunks, order)


def _in_roi_order(chunks: list[torch.Tensor], order: list[torch.Tensor]) -> torch.Tensor:
    """Rows computed in groups (chunks[k] holds rows order[k]) put back in row order."""
    rows = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    index = torch.cat(order)
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(index.numel(), device=index.device)
    return rows[inverse]
