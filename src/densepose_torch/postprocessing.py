"""From raw model outputs to results in original-image pixels (detectron2's detector_postprocess
and its chart-result converters).

Each detection's SxS maps are resampled to its integer box with torch's bilinear interpolate
(align_corners=False), called on that detection's own (1, C, S, S) slice as detectron2 calls
it: the kernel's rounding depends on its code path, which depends on the output size, so only
the same call reproduces detectron2 to the bit. Labels are the fine-part argmax where the coarse
argmax is foreground; U, V (and sigma_2/kappa) are gathered from the labelled part's channel.
All of it runs on the device of the raw outputs: from a GPU only each person's final chart is
copied to the host.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .definitions import PER_PART_FIELDS, SEGM_CONFIDENCE_FIELDS
from .modeling import ChartOutputs, RawDetections
from .ops.boxes import clip_boxes, nonempty
from .results import ChartResult, DensePoseResult


def rescale_detections(raw: RawDetections, input_size: tuple[int, int], original_size: tuple[int, int]) -> RawDetections:
    """Boxes scaled from the resized input to the original image, clipped, empty ones dropped."""
    scale_y = original_size[0] / input_size[0]
    scale_x = original_size[1] / input_size[1]
    boxes = raw.boxes.clone()
    boxes[:, 0::2] *= scale_x
    boxes[:, 1::2] *= scale_y
    boxes = clip_boxes(boxes, original_size[0], original_size[1])
    keep = nonempty(boxes)
    return RawDetections(boxes[keep], raw.scores[keep], {k: v[keep] for k, v in raw.densepose.items()})


def integer_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) int64 x, y, w, h: each of x0, y0, x1 - x0, y1 - y0 truncated on its own (so a box
    can end a pixel short of int(x1)), w and h at least 1."""
    xywh = boxes.clone()
    xywh[:, 2:] -= xywh[:, :2]
    xywh = xywh.long()
    xywh[:, 2:] = xywh[:, 2:].clamp(min=1)
    return xywh


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps, size, mode="bilinear", align_corners=False)[0]


def _sample_labelled_channel(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bilinear value (align_corners=False) of channel labels[y, x] of (C, S, S) `maps` at every
    pixel of an (h, w) box: the same numbers as resizing all channels and picking one, up to
    float rounding, for a 25th of the work."""
    size = maps.shape[-1]
    h, w = labels.shape

    def axis(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        source = ((torch.arange(n, dtype=torch.float32, device=maps.device) + 0.5) * (size / n) - 0.5).clamp(min=0)
        low = source.long().clamp(max=size - 1)
        return low, (low + 1).clamp(max=size - 1), source - low
    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    flat = maps.reshape(-1)
    base = labels * (size * size)
    corner = lambda ys, xs: flat[base + ys[:, None] * size + xs[None, :]]  # noqa: E731
    top = corner(y0, x0) * (1 - fx) + corner(y0, x1) * fx
    bottom = corner(y1, x0) * (1 - fx) + corner(y1, x1) * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def chart_of_box(outputs: ChartOutputs, index: int, x: int, y: int, w: int, h: int, exact: bool = True) -> ChartResult:
    """The chart of detection `index` placed at (x, y) with size (h, w). `exact` resamples every
    channel as detectron2 does; otherwise only the labelled part's channel is sampled."""
    size = (h, w)
    foreground = _resize(outputs["coarse_segm"][index : index + 1], size).argmax(dim=0) > 0
    labels = _resize(outputs["fine_segm"][index : index + 1], size).argmax(dim=0) * foreground
    body = labels > 0
    values = {}
    for name in PER_PART_FIELDS:
        if name in outputs:
            if exact:
                picked = _resize(outputs[name][index : index + 1], size).gather(0, labels[None])[0]
            else:
                picked = _sample_labelled_channel(outputs[name][index], labels)
            values[name] = torch.where(body, picked, torch.zeros_like(picked))
    for name in SEGM_CONFIDENCE_FIELDS:
        if name in outputs:
            values[name] = _resize(outputs[name][index : index + 1], size)[0]
    if "mask" in outputs:
        values["mask"] = _resize(outputs["mask"][index : index + 1], size)[0] > 0
    values["uv"] = torch.stack((values.pop("u"), values.pop("v")))
    values["labels"] = labels.to(torch.uint8)
    host = {name: value.cpu().numpy() for name, value in values.items()}
    return ChartResult(x=x, y=y, **host)


def charts_from_outputs(boxes: torch.Tensor, outputs: ChartOutputs, exact: bool = True) -> list[ChartResult]:
    """Per-box chart results from the raw (N, C, S, S) outputs of boxes in original pixels."""
    outputs = {k: v.detach().float().contiguous() for k, v in outputs.items()}
    xywh = integer_boxes(boxes.detach().float().cpu()).tolist()
    return [chart_of_box(outputs, i, x, y, w, h, exact) for i, (x, y, w, h) in enumerate(xywh)]


def keypoints_from_heatmaps(boxes: torch.Tensor, heatmaps: torch.Tensor) -> np.ndarray:
    """(N, K, 3) float32 image x, y and score of each keypoint from (N, K, S, S) heatmap logits
    laid over (N, 4) XYXY boxes, as Mask R-CNN decodes them: each heatmap is resized (bicubic)
    to the box's size in whole pixels, its maximum taken, and the pixel's centre mapped back
    into the box; the score is the softmax probability of the maximum's grid cell among the S x S
    cells (the distribution the keypoint loss trains)."""
    heatmaps = heatmaps.detach().float().cpu()
    boxes = boxes.detach().float().cpu()
    count, num_keypoints, size = heatmaps.shape[0], heatmaps.shape[1], heatmaps.shape[-1]
    keypoints = np.zeros((count, num_keypoints, 3), np.float32)
    probabilities = heatmaps.flatten(2).softmax(dim=-1).reshape(heatmaps.shape)
    for index in range(count):
        x0, y0, x1, y1 = boxes[index].tolist()
        width, height = max(math.ceil(x1 - x0), 1), max(math.ceil(y1 - y0), 1)
        resized = F.interpolate(heatmaps[index : index + 1], (height, width), mode="bicubic", align_corners=False)[0]
        peak = resized.reshape(num_keypoints, -1).argmax(dim=1)
        row, col = peak // width, peak % width
        keypoints[index, :, 0] = x0 + (col.numpy() + 0.5) * ((x1 - x0) / width)
        keypoints[index, :, 1] = y0 + (row.numpy() + 0.5) * ((y1 - y0) / height)
        cell_row = (row * size // height).clamp(max=size - 1)
        cell_col = (col * size // width).clamp(max=size - 1)
        keypoints[index, :, 2] = probabilities[index, torch.arange(num_keypoints), cell_row, cell_col].numpy()
    return keypoints


def to_result(raw: RawDetections, original_size: tuple[int, int], exact: bool = True, chart_body: str = "smpl") -> DensePoseResult:
    """A DensePoseResult from detections already rescaled to the original image, by a model whose
    charts are on `chart_body` (ModelConfig.chart_body)."""
    boxes = raw.boxes.detach().float().cpu()
    keypoints = None
    if "keypoints" in raw.densepose:
        keypoints = keypoints_from_heatmaps(boxes, raw.densepose["keypoints"])
    return DensePoseResult(
        image_size=original_size,
        boxes=boxes.numpy().astype(np.float32).reshape(-1, 4),
        scores=raw.scores.detach().float().cpu().numpy().astype(np.float32),
        charts=charts_from_outputs(boxes, raw.densepose, exact) if len(boxes) else [],
        keypoints=keypoints,
        chart_body=chart_body,
    )
