"""RoIAlign that gradients flow through, for training (ops.roi_align is the bit-exact inference
kernel and writes into preallocated buffers, which autograd cannot follow).

RoIAlign's bilinear sample clamps a position in [-1, 0) to 0 and one in [size - 1, size] to the
last pixel, and reads 0 further out. Positions are clamped that way before sampling, and those
further out (or padding samples of a box with a smaller adaptive grid) are moved two pixels
outside the map, where `grid_sample(padding_mode="zeros", align_corners=True)` reads 0: no mask
multiplies the sampled features. Each bin is the average of its grid of samples, taken with
`avg_pool2d` while the samples of all boxes of an image still lie in one map, so every copy and
reordering after it moves a quarter of the data (at sampling ratio 2). The box head pools
hundreds of boxes a batch, so this is a tenth of a training step of the default model
(`benchmarks/bench_training.py --size 256 --system-malloc`: 0.40 against 0.45 s per iteration
before). Values agree with ops.roi_align up to float rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops.roi_align import pack_rois, pooling_levels


def _axis_positions(
    start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int, size: int
) -> torch.Tensor:
    """(R, bins * max_grid) sample positions along one axis, in grid_sample's [-1, 1] coordinates:
    clamped as RoIAlign clamps them, and 2 pixels outside the map for samples that read 0 (beyond
    a pixel outside the map, or not part of a box whose adaptive grid is smaller than `max_grid`)."""
    bin_size = length / bins
    bin_index = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    sample = torch.arange(max_grid, device=start.device)[None, None, :]
    step = bin_size[:, None, None] / grid.clamp(min=1)[:, None, None]  # an empty box's grid is 0: no samples
    positions = start[:, None, None] + bin_index * bin_size[:, None, None] + (sample + 0.5) * step
    reads = (sample < grid[:, None, None]) & (positions >= -1.0) & (positions <= size)
    positions = torch.where(reads, positions.clamp(0.0, size - 1.0), torch.full_like(positions, -2.0))
    # align_corners=True: -1 and +1 are the centres of the first and last pixel.
    return (positions / max(size - 1, 1) * 2.0 - 1.0).reshape(len(start), -1)


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
    gy = _axis_positions(y1, roi_h, output_size, grid_h, max_gh, height)  # (R, P * gh)
    gx = _axis_positions(x1, roi_w, output_size, grid_w, max_gw, width)  # (R, P * gw)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (R, P*gh, P*gw, 2)
    image_of_roi = rois[:, 0].to(torch.int64)
    chunks, order = [], []
    for image in torch.unique(image_of_roi).tolist():
        members = torch.nonzero(image_of_roi == image).flatten()
        rows = grid[members].reshape(1, -1, grid.shape[2], 2)  # all boxes of the image stacked vertically
        sampled = F.grid_sample(features[image : image + 1], rows, mode="bilinear", padding_mode="zeros", align_corners=True)
        # Each box's rows are a whole number of bins tall, so no bin straddles two boxes.
        pooled = F.avg_pool2d(sampled, (max_gh, max_gw))  # (1, C, Ri * P, P): sums / (max_gh * max_gw)
        chunks.append(pooled.reshape(channels, len(members), output_size, output_size).transpose(0, 1))
        order.append(members)
    pooled = _in_roi_order(chunks, order)
    if sampling_ratio > 0:
        return pooled
    # Bins of a box with a smaller adaptive grid averaged zeros too: rescale to its own count.
    scale = (max_gh * max_gw) / (grid_h * grid_w).clamp(min=1)
    return pooled * scale[:, None, None, None].to(dtype)


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
