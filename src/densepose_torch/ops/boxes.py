"""Box arithmetic in detectron2's conventions: XYXY floats, width = x2 - x1 (no +1)."""
from __future__ import annotations

import math

import torch

# Largest log-scale a regression may apply: boxes can grow at most 1000/16 times per step.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU, (N, M); 0 where the union is empty."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def vote_boxes(kept: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Box voting: each of the `kept` boxes (N, 4) replaced by the mean of the `boxes` (M, 4)
    overlapping it at IoU >= `iou_threshold`, weighted by their `scores` (M,); a kept box that no
    box overlaps (one of zero area) stays as it is. Traceable: the weighted sum is a product and a
    sum rather than a matrix product, which an int8 quantiser would treat as a layer."""
    weights = torch.where(box_iou(kept, boxes) >= iou_threshold, scores[None, :], torch.zeros_like(scores)[None, :])
    total = weights.sum(dim=1, keepdim=True)
    voted = (weights[:, :, None] * boxes[None, :, :]).sum(dim=1) / total.clamp(min=torch.finfo(boxes.dtype).tiny)
    return torch.where(total > 0, voted, kept)


def clip_boxes(boxes: torch.Tensor, height: int | float, width: int | float) -> torch.Tensor:
    """Clamp XYXY boxes to the image: x in [0, width], y in [0, height]."""
    x1 = boxes[:, 0].clamp(min=0, max=width)
    y1 = boxes[:, 1].clamp(min=0, max=height)
    x2 = boxes[:, 2].clamp(min=0, max=width)
    y2 = boxes[:, 3].clamp(min=0, max=height)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Mask of boxes whose width and height are both > threshold."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


class BoxCoder:
    """detectron2's Box2BoxTransform: deltas (dx, dy, dw, dh) relative to a reference box,
    scaled by `weights`; dw and dh are clamped at `scale_clamp` before exp."""

    def __init__(self, weights: tuple[float, float, float, float], scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.weights = weights
        self.scale_clamp = scale_clamp

    def decode(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Apply (N, 4) deltas to (N, 4) boxes."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0] / wx
        dy = deltas[:, 1] / wy
        dw = (deltas[:, 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3] / wh).clamp(max=self.scale_clamp)
        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        pred_w = torch.exp(dw) * widths
        pred_h = torch.exp(dh) * heights
        return torch.stack(
            (
                pred_ctr_x - 0.5 * pred_w,
                pred_ctr_y - 0.5 * pred_h,
                pred_ctr_x + 0.5 * pred_w,
                pred_ctr_y + 0.5 * pred_h,
            ),
            dim=-1,
        )

    def encode(self, boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Deltas that take `boxes` to `targets` (the inverse of decode, used by training)."""
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        target_w = targets[:, 2] - targets[:, 0]
        target_h = targets[:, 3] - targets[:, 1]
        target_x = targets[:, 0] + 0.5 * target_w
        target_y = targets[:, 1] + 0.5 * target_h
        wx, wy, ww, wh = self.weights
        return torch.stack(
            (
                wx * (target_x - ctr_x) / widths,
                wy * (target_y - ctr_y) / heights,
                ww * torch.log(target_w / widths),
                wh * torch.log(target_h / heights),
            ),
            dim=-1,
        )
