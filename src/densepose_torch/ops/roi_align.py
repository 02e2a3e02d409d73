"""RoIAlign with torchvision's exact semantics and arithmetic, in plain torch.

Every output bin averages a grid of bilinear samples. Sample positions, the clamping of samples
near the border, the zeros for samples more than a pixel outside, the four corner weights and
the order in which samples are summed all follow torchvision's CPU kernel, so results agree with
it to the last bit or nearly (DensePose's random-weight references amplify any difference).
All boxes of a chunk are computed at once: each sample is a gather of four rows of a
channels-last copy of the feature map.
"""
from __future__ import annotations

import math

import torch

# Gathered values per step (samples x channels): small enough to stay in a CPU's cache...
_VALUES_PER_STEP = 1 << 19
# ...while on a GPU each step is a dozen kernel launches whatever its size: with the CPU's steps
# the box head's pooling of a batch of 16 images made ~1500 steps, and launches, not arithmetic,
# bounded the GPU (64 MiB buffers of float32 here).
_VALUES_PER_STEP_GPU = 1 << 24
# ...unless bins have so many samples that a step would hold only a handful of them.
_MIN_BINS_PER_STEP = 32


def _axis_samples(
    start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis, for (R, bins, max_grid) samples: low and high pixel index, the weights of
    the low and high pixel, and whether the sample exists and lies within a pixel of the map."""
    dtype = start.dtype
    bin_index = torch.arange(bins, dtype=dtype, device=start.device)[None, :, None]
    sample = torch.arange(max_grid, device=start.device)[None, None, :]
    grid_f = grid.to(dtype)[:, None, None]
    coord = (start[:, None, None] + bin_index * bin_size[:, None, None]) + (sample.to(dtype) + 0.5) * bin_size[:, None, None] / grid_f
    valid = (coord >= -1.0) & (coord <= size) & (sample < grid[:, None, None])
    # Padding samples of empty boxes divide by a grid of 0; park them on pixel 0 (weight 0).
    coord = torch.where(valid, coord, torch.zeros_like(coord)).clamp(min=0)
    low = coord.to(torch.int64)
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(dtype), coord)
    frac = coord - low.to(dtype)
    return low, high, 1.0 - frac, frac, valid


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
    batch, channels, height, width = features.shape
    if num_rois == 0:
        return features.new_zeros((0, channels, out_h, out_w))

    # Sample positions, weights and sums are float32 even for half-precision features, whose
    # gathered rows are widened chunk by chunk (widening the whole map would copy it).
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    rois = rois.to(dtype)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = (rois[:, 3] * spatial_scale - offset) - x1
    roi_h = (rois[:, 4] * spatial_scale - offset) - y1
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
    count = (grid_h * grid_w).clamp(min=1).to(dtype)

    # (N*H*W, C) rows: one gather fetches all channels of a pixel.
    table = features.permute(0, 2, 3, 1).reshape(-1, channels)
    sums = features.new_empty((num_rois, out_h, out_w, channels), dtype=dtype)
    # Boxes are pooled in groups of equal sample grids. One grid padded to the largest of all
    # boxes would let a single tall box and a single wide one multiply everybody's samples
    # (a 29 x 29 grid instead of 4 x 4 for every box has been seen on random-weight proposals).
    grid_key = grid_h.clamp(min=0) * (int(grid_w.max().clamp(min=0)) + 1) + grid_w.clamp(min=0)
    for key in torch.unique(grid_key):
        members = torch.nonzero(grid_key == key).flatten()
        sums[members] = _sum_samples(
            table, rois[members, 0].to(torch.int64) * (height * width), (height, width),
            (y1[members], bin_h[members], out_h, grid_h[members]),
            (x1[members], bin_w[members], out_w, grid_w[members]),
        )
    output = sums / count[:, None, None, None]
    return output.permute(0, 3, 1, 2).to(features.dtype).contiguous(memory_format=_memory_format(features))


def _sum_samples(
    table: torch.Tensor, image_row: torch.Tensor, map_size: tuple[int, int],
    y_axis: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor],
    x_axis: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor],
) -> torch.Tensor:
    """Sum of the bilinear samples of each bin of R boxes, as (R, bins_y, bins_x, C) float32 (or
    float64). `table` is the (N*H*W, C) feature map, `image_row` the first row of each box's
    image in it; each axis is (box start, bin size, bins, samples per bin) in map pixels."""
    height, width = map_size
    (y1, bin_h, out_h, grid_h), (x1, bin_w, out_w, grid_w) = y_axis, x_axis
    num_rois, channels = y1.shape[0], table.shape[1]
    dtype = y1.dtype
    max_gh = max(int(grid_h.max()), 1)
    max_gw = max(int(grid_w.max()), 1)
    y_low, y_high, y_w0, y_w1, y_ok = _axis_samples(y1, bin_h, out_h, grid_h, max_gh, height)
    x_low, x_high, x_w0, x_w1, x_ok = _axis_samples(x1, bin_w, out_w, grid_w, max_gw, width)

    # Per sample (roi, bin row, sample row, bin column, sample column): 4 corner rows, 4 weights.
    shape = (num_rois, out_h, max_gh, out_w, max_gw)
    yl, yh = y_low[:, :, :, None, None], y_high[:, :, :, None, None]
    xl, xh = x_low[:, None, None, :, :], x_high[:, None, None, :, :]
    hy, ly = y_w0[:, :, :, None, None], y_w1[:, :, :, None, None]
    hx, lx = x_w0[:, None, None, :, :], x_w1[:, None, None, :, :]
    ok = (y_ok[:, :, :, None, None] & x_ok[:, None, None, :, :]).to(dtype)
    base = image_row[:, None, None, None, None]
    rows = [base + yl * width + xl, base + yl * width + xh, base + yh * width + xl, base + yh * width + xh]
    weights = [hy * hx * ok, hy * lx * ok, ly * hx * ok, ly * lx * ok]
    # Sample-major order within a bin, so that a bin's samples are summed in the kernel's order.
    rows = [r.expand(shape).permute(0, 1, 3, 2, 4).reshape(-1) for r in rows]
    weights = [w.expand(shape).permute(0, 1, 3, 2, 4).reshape(-1, 1) for w in weights]
    samples = max_gh * max_gw
    bins = num_rois * out_h * out_w
    output = table.new_empty((bins, channels), dtype=dtype)
    # Enough bins per step that each add below is not dominated by its call overhead.
    values_per_step = _VALUES_PER_STEP if table.device.type == "cpu" else _VALUES_PER_STEP_GPU
    step = max(_MIN_BINS_PER_STEP, values_per_step // (samples * channels))
    step = min(step, bins)
    corner = table.new_empty((step * samples, channels), dtype=dtype)
    value = table.new_empty((step * samples, channels), dtype=dtype)
    narrow = table.new_empty((step * samples, channels)) if table.dtype != dtype else None

    def gather(index: torch.Tensor, out: torch.Tensor) -> None:
        if narrow is None:
            torch.index_select(table, 0, index, out=out)
        else:
            out.copy_(torch.index_select(table, 0, index, out=narrow[: out.shape[0]]))

    for begin in range(0, bins, step):
        stop = min(begin + step, bins)
        span = slice(begin * samples, stop * samples)
        n = (stop - begin) * samples
        # The kernel's arithmetic: ((w1*a + w2*b) + w3*c) + w4*d per sample, then a running sum
        # over the bin's samples in row-major order, then one division by the count.
        gather(rows[0][span], value[:n])
        value[:n].mul_(weights[0][span])
        for k in (1, 2, 3):
            gather(rows[k][span], corner[:n])
            value[:n].add_(corner[:n].mul_(weights[k][span]))
        per_bin = value[:n].view(stop - begin, samples, channels)
        total = per_bin[:, 0].clone()
        for sample in range(1, samples):
            total.add_(per_bin[:, sample])
        output[begin:stop] = total
    return output.view(num_rois, out_h, out_w, channels)


def _memory_format(features: torch.Tensor) -> torch.memory_format:
    """Pooled features keep the layout of the map they come from (channels-last in fast mode)."""
    channels_last = features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def level_of_boxes(boxes: torch.Tensor, min_level: int, max_level: int, canonical_size: float = 224.0, canonical_level: int = 4) -> torch.Tensor:
    """FPN level of each box by detectron2's rule: floor(4 + log2(sqrt(area) / 224 + 1e-8))."""
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size + 1e-8))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


def pooling_levels(boxes: torch.Tensor, scales: list[float]) -> torch.Tensor:
    """(R,) int64 index into `scales` (one per FPN level, finest first, e.g. 1/4 .. 1/32) of the
    level each of the (R, 4) XYXY boxes is pooled from."""
    min_level = int(round(-math.log2(scales[0])))
    max_level = int(round(-math.log2(scales[-1])))
    return level_of_boxes(boxes, min_level, max_level)


def pack_rois(boxes: list[torch.Tensor], features: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(R, 5) rois [image index, x1, y1, x2, y2] from one (Ri, 4) box tensor per image, in that
    order, in `dtype` (default: the boxes' own); no boxes: an empty (0, 5) tensor like `features`."""
    if not boxes:
        return features.new_zeros((0, 5))
    dtype = dtype or boxes[0].dtype
    indices = [torch.full((b.shape[0], 1), float(i), dtype=dtype, device=b.device) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat((index, b.to(dtype)), dim=1) for index, b in zip(indices, boxes)], dim=0)


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
    rois = pack_rois(boxes, features[0])
    if len(features) == 1:
        return roi_align(features[0], rois, output_size, scales[0], sampling_ratio, aligned)
    levels = pooling_levels(rois[:, 1:], scales)
    output = features[0].new_zeros((rois.shape[0], features[0].shape[1], output_size, output_size))
    output = output.contiguous(memory_format=_memory_format(features[0]))
    for level, (feature, scale) in enumerate(zip(features, scales)):
        members = torch.nonzero(levels == level).flatten()
        if members.numel():
            output[members] = roi_align(feature, rois[members], output_size, scale, sampling_ratio, aligned)
    return output
