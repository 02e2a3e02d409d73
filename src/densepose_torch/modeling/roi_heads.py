"""Per-region heads: the Fast R-CNN box head that turns proposals into person detections, and
the DensePose branch that runs on those detections (detectron2's DensePoseROIHeads at test time)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..ops.boxes import BoxCoder, clip_boxes, vote_boxes
from ..ops.nms import batched_nms
from ..ops.roi_align import multilevel_roi_align
from .cascade import SecondStage, TaskBranches
from .densepose_heads import ChartOutputs, ChartPredictor, Decoder, DeepLabHead, V1ConvXHead

ROI_SCALES = (1 / 4, 1 / 8, 1 / 16, 1 / 32)  # p2..p5
BOX_POOLER_RESOLUTION = 7
DENSEPOSE_POOLER_SAMPLING_RATIO = 2
# (features, boxes per image, output size, scales, sampling ratio, aligned) -> (R, C, P, P)
Pooler = Callable[[list[torch.Tensor], list[torch.Tensor], int, list[float], int, bool], torch.Tensor]


class BoxHead(nn.Module):
    """Two fully connected layers on the flattened 7x7 pooled features."""

    def __init__(self, in_features: int, fc_dim: int = 1024):
        super().__init__()
        self.fc1 = nn.Linear(in_features, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return F.relu(self.fc2(x))


class BoxPredictor(nn.Module):
    """Class logits (person, background: background is the last column) and the person box deltas."""

    def __init__(self, fc_dim: int = 1024, num_classes: int = 1):
        super().__init__()
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class DensePoseROIHeads(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        channels = config.fpn_channels
        self.box_head = BoxHead(channels * BOX_POOLER_RESOLUTION**2, config.box_fc_dim)
        self.box_predictor = BoxPredictor(config.box_fc_dim)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        if config.decoder:
            self.decoder = Decoder(channels)
        if config.densepose_head == "deeplab":
            self.densepose_head = DeepLabHead(channels, config.head_channels, config.head_convs)
        else:
            self.densepose_head = V1ConvXHead(channels, config.head_channels, config.head_convs)
        self.densepose_predictor = ChartPredictor(config, config.head_channels)
        if config.is_cascade:
            self.tasks = TaskBranches(config, channels)
            self.cascade = SecondStage(config, channels)

    def detect(
        self,
        features: list[torch.Tensor],
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Person boxes (input-image pixels) and scores per image: score > threshold (strictly),
        NMS, the `max_detections` best, box voting when the config asks for it. The threshold and
        the limit default to the config's test-time values."""
        config = self.config
        threshold = config.score_threshold_test if score_threshold is None else score_threshold
        limit = config.detections_per_image if max_detections is None else max_detections
        logits, deltas = self.box_predictor(self.box_head(self.pool_box_features(features, proposals)))
        detections = []
        start = 0
        for image_proposals, (height, width) in zip(proposals, image_sizes):
            stop = start + image_proposals.shape[0]
            boxes = self.box_coder.decode(deltas[start:stop].float(), image_proposals)
            scores = F.softmax(logits[start:stop].float(), dim=-1)
            start = stop
            finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
            if not finite.all():
                boxes, scores = boxes[finite], scores[finite]
            person = scores[:, 0]
            boxes = clip_boxes(boxes, height, width)
            keep = person > threshold
            boxes, person = boxes[keep], person[keep]
            keep = batched_nms(boxes, person, None, config.nms_threshold_test)[:limit]
            kept = boxes[keep]
            if config.box_vote_iou is not None:
                kept = vote_boxes(kept, boxes, person, config.box_vote_iou)
            detections.append((kept, person[keep]))
        return detections

    def pool_box_features(self, features: list[torch.Tensor], boxes: list[torch.Tensor], pool: Pooler = multilevel_roi_align) -> torch.Tensor:
        """(R, C, 7, 7) box-head inputs of the given boxes, from p2..p5 by box size. `pool` is the
        bit-exact inference kernel; training passes a differentiable one with the same arguments."""
        config = self.config
        return pool(features[:4], boxes, BOX_POOLER_RESOLUTION, list(ROI_SCALES), config.box_pooler_sampling_ratio, config.box_pooler_aligned)

    def pool_densepose_features(
        self, features: list[torch.Tensor], boxes: list[torch.Tensor], pool: Pooler = multilevel_roi_align
    ) -> torch.Tensor:
        """(R, C, P, P) features of the given boxes: from the decoder's stride-4 map, or (legacy)
        from p2..p5 by box size. `pool` as in pool_box_features."""
        resolution = self.config.pooler_resolution
        if self.config.decoder:
            merged = self.decoder(features[:4])
            return pool([merged], boxes, resolution, [ROI_SCALES[0]], DENSEPOSE_POOLER_SAMPLING_RATIO, False)
        return pool(features[:4], boxes, resolution, list(ROI_SCALES), DENSEPOSE_POOLER_SAMPLING_RATIO, False)

    def densepose(self, features: list[torch.Tensor], boxes: list[torch.Tensor]) -> ChartOutputs:
        """Raw chart outputs (R, C, S, S) of all boxes of the batch, in one head call; a cascade
        model's last stage adds "mask" (R, 1, S, S) and/or "keypoints" (R, 17, S, S) logits.
        Outputs are float32 whatever the features' precision."""
        last_stage = self.branch_outputs(self.pool_densepose_features(features, boxes))[-1]
        return {name: value.float() for name, value in last_stage.items()}

    def branch_outputs(self, pooled: torch.Tensor) -> list[ChartOutputs]:
        """The outputs of every stage from the pooled ROI features: one stage of charts for plain
        models; for cascade models stage one and stage two, each with charts, "mask" logits and/or
        "keypoints" heatmap logits, all on the charts' grid."""
        first = self.densepose_predictor(self.densepose_head(pooled))
        if not self.config.is_cascade:
            return [first]
        first.update(self.tasks(pooled))
        return [first, self.cascade(pooled, first)]
