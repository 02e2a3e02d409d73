"""Region proposal network: anchors on p2..p6, objectness and box deltas from one shared head,
per-level top-k and NMS (detectron2's StandardRPNHead + RPN at test time)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.boxes import BoxCoder, clip_boxes, nonempty
from ..ops.nms import batched_nms
from .layers import Conv2d

ANCHOR_SIZES = (32, 64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def cell_anchors(size: float, aspect_ratios: tuple[float, ...] = ASPECT_RATIOS) -> torch.Tensor:
    """(A, 4) anchors centred on the origin, one per aspect ratio (h / w), area size**2, unrounded."""
    anchors = []
    for ratio in aspect_ratios:
        w = math.sqrt(size * size / ratio)
        h = ratio * w
        anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(height: int, width: int, stride: int, size: float, device: torch.device) -> torch.Tensor:
    """(H * W * A, 4) anchors of one level, location-major, anchor-minor. The cell corner, not its
    centre, is the anchor centre (detectron2's offset 0)."""
    shifts_x = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x = shift_x.reshape(-1)
    shift_y = shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts[:, None, :] + cell_anchors(size).to(device)[None, :, :]).reshape(-1, 4)


class RPNHead(nn.Module):
    def __init__(self, channels: int = 256, num_anchors: int = len(ASPECT_RATIOS)):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = Conv2d(channels, num_anchors * 4, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: logits (N, H*W*A) and deltas (N, H*W*A, 4), ordered like the anchors."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            n, _, h, w = x.shape
            logits.append(self.objectness_logits(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.anchor_deltas(t)
            deltas.append(d.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return logits, deltas


class RPN(nn.Module):
    def __init__(
        self,
        channels: int = 256,
        strides: tuple[int, ...] = (4, 8, 16, 32, 64),
        pre_nms_topk: int = 1000,
        post_nms_topk: int = 1000,
        nms_threshold: float = 0.7,
    ):
        super().__init__()
        self.rpn_head = RPNHead(channels)
        self.strides = strides
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.nms_threshold = nms_threshold
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def anchors(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [
            grid_anchors(f.shape[-2], f.shape[-1], stride, size, f.device)
            for f, stride, size in zip(features, self.strides, ANCHOR_SIZES)
        ]

    def forward(self, features: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(proposals (R, 4), objectness logits (R,)) per image, best first."""
        logits, deltas = self.rpn_head(features)
        return self.find_top_proposals(logits, deltas, self.anchors(features), image_sizes, self.pre_nms_topk, self.post_nms_topk)

    def find_top_proposals(
        self,
        logits: list[torch.Tensor],
        deltas: list[torch.Tensor],
        anchors: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
        pre_nms_topk: int,
        post_nms_topk: int,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image: the `pre_nms_topk` best anchors of each level, decoded, clipped, NMS per
        level, the `post_nms_topk` best overall (training asks for more than testing)."""
        outputs = []
        for image, (height, width) in enumerate(image_sizes):
            boxes, scores, levels = [], [], []
            for level, (level_logits, level_deltas, level_anchors) in enumerate(zip(logits, deltas, anchors)):
                k = min(level_logits.shape[1], pre_nms_topk)
                top_scores, top_index = level_logits[image].topk(k)
                boxes.append(self.box_coder.decode(level_deltas[image, top_index], level_anchors[top_index]))
                scores.append(top_scores)
                levels.append(torch.full((k,), level, dtype=torch.int64, device=top_scores.device))
            boxes = torch.cat(boxes)
            scores = torch.cat(scores)
            levels = torch.cat(levels)
            finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
            if not finite.all():
                boxes, scores, levels = boxes[finite], scores[finite], levels[finite]
            boxes = clip_boxes(boxes, height, width)
            keep = nonempty(boxes)
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
            keep = batched_nms(boxes, scores, levels, self.nms_threshold)[:post_nms_topk]
            outputs.append((boxes[keep], scores[keep]))
        return outputs
