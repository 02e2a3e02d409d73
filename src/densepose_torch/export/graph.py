"""The whole DensePose R-CNN as one traceable graph, for ONNX export.

`ExportGraph` runs the model's own modules (backbone, RPN head, box head, DensePose head and
predictor) and replaces the inference glue by steps whose shapes flow from tensors instead of
Python numbers: per-level top-k with k = min(k, anchors), NMS, FPN level assignment and RoIAlign
as single ONNX operators (`onnx_ops`), and no branch that depends on data. Its arithmetic is the
exact path's; what can differ is float rounding inside the runtime's own kernels and the order of
exact score ties (see docs/export.md for the measured agreement).

Inputs, all for one image:
    image            (1, 3, H, W) float32: the resized BGR image, 0..255, not normalised
    score_threshold  () float32: people scoring above it are kept (the model's own: 0.05)
    max_detections   () int64: at most this many people, best first (the model's own: 100)
    given_boxes      (K, 4) float32 XYXY in `image` pixels: with K > 0 the DensePose branch runs
                     on these boxes (score 1) instead of the detections; K = 0 detects
Outputs: boxes (N, 4), scores (N,), then each chart field (N, C, S, S) of `output_fields`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import DensePoseRCNN
from ..modeling.densepose_rcnn import SIZE_DIVISIBILITY
from ..ops.boxes import nonempty, vote_boxes
from ..ops.roi_align import pooling_levels
from .onnx_ops import NonMaxSuppression, RoIAlign, TopK

INPUT_NAMES = ("image", "score_threshold", "max_detections", "given_boxes")


def _select(tensor: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of `tensor` where `mask` holds, and their indices (NonZero + Gather in the graph)."""
    index = torch.nonzero(mask).flatten()
    return tensor.index_select(0, index), index


def _clip(boxes: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """Boxes clamped to [0, width] x [0, height]; `limits` is (width, height, width, height)."""
    return torch.min(torch.max(boxes, torch.zeros_like(limits)), limits)


def _finite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    mask = torch.isfinite(tensors[0]).all(dim=1) if tensors[0].dim() == 2 else torch.isfinite(tensors[0])
    for tensor in tensors[1:]:
        mask = mask & (torch.isfinite(tensor).all(dim=1) if tensor.dim() == 2 else torch.isfinite(tensor))
    return mask


def pool_by_level(
    features: list[torch.Tensor], boxes: list[torch.Tensor], output_size: int, scales: list[float], sampling_ratio: int, aligned: bool
) -> torch.Tensor:
    """detectron2's ROIPooler for the one image of the graph (the `Pooler` signature of
    `modeling.roi_heads`): each box pooled from the level its size selects, rows in box order."""
    rois = boxes[0]
    if len(features) == 1:
        return RoIAlign.apply(features[0], rois, output_size, scales[0], sampling_ratio, aligned)
    levels = pooling_levels(rois, scales)
    pooled, order = [], []
    for level, (feature, scale) in enumerate(zip(features, scales)):
        members, index = _select(rois, levels == level)
        pooled.append(RoIAlign.apply(feature, members, output_size, scale, sampling_ratio, aligned))
        order.append(index)
    # Rows come out grouped by level; put them back in box order.
    return torch.cat(pooled).index_select(0, torch.argsort(torch.cat(order)))


class ExportGraph(nn.Module):
    """A float32 DensePose R-CNN as a graph from one resized image to boxes, scores and charts."""

    def __init__(self, model: DensePoseRCNN, output_fields: list[str]):
        super().__init__()
        self.model = model
        self.output_fields = output_fields

    def forward(self, image: torch.Tensor, score_threshold: torch.Tensor, max_detections: torch.Tensor, given_boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        size = torch._shape_as_tensor(image)[2:].to(torch.float32)
        limits = torch.stack((size[1], size[0], size[1], size[0]))
        height, width = image.shape[2], image.shape[3]
        padded = F.pad(image - model.pixel_mean, (0, (-width) % SIZE_DIVISIBILITY, 0, (-height) % SIZE_DIVISIBILITY))
        features = model.backbone(padded)
        proposals = self.proposals(features, limits)
        det_boxes, det_scores = self.detect(features, proposals, limits, score_threshold, max_detections)
        chosen_boxes, chosen_scores = self.choose_boxes(det_boxes, det_scores, given_boxes)
        heads = model.roi_heads
        charts = heads.branch_outputs(heads.pool_densepose_features(features, [chosen_boxes], pool=pool_by_level))[-1]
        return (chosen_boxes, chosen_scores, *(charts[name] for name in self.output_fields))

    def proposals(self, features: list[torch.Tensor], limits: torch.Tensor) -> torch.Tensor:
        """(R, 4) RPN proposals, best first: per level the best anchors, decoded, clipped, NMS
        within each level, then the best overall."""
        rpn = self.model.proposal_generator
        logits, deltas = rpn.rpn_head(features)
        boxes, scores, levels = [], [], []
        for level, (level_logits, level_deltas, anchors) in enumerate(zip(logits, deltas, rpn.anchors(features))):
            top_scores, top_index = TopK.apply(level_logits[0], rpn.pre_nms_topk)
            boxes.append(rpn.box_coder.decode(level_deltas[0].index_select(0, top_index), anchors.index_select(0, top_index)))
            scores.append(top_scores)
            levels.append(torch.zeros_like(top_index) + level)
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        keep = _finite_rows(boxes, scores)
        boxes = _clip(boxes, limits)
        keep = keep & nonempty(boxes)
        boxes, index = _select(boxes, keep)
        scores, levels = scores.index_select(0, index), levels.index_select(0, index)
        max_kept = torch.tensor(rpn.post_nms_topk, dtype=torch.int64)
        kept = []
        for level in range(len(logits)):
            members = torch.nonzero(levels == level).flatten()
            chosen = NonMaxSuppression.apply(boxes.index_select(0, members), scores.index_select(0, members), rpn.nms_threshold, max_kept)
            kept.append(members.index_select(0, chosen))
        kept = torch.cat(kept)
        _, best = TopK.apply(scores.index_select(0, kept), rpn.post_nms_topk)
        return boxes.index_select(0, kept.index_select(0, best))

    def detect(
        self, features: list[torch.Tensor], proposals: torch.Tensor, limits: torch.Tensor, score_threshold: torch.Tensor, max_detections: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Person boxes and scores: score > threshold, NMS, at most `max_detections`, best first;
        box voting when the config asks for it."""
        heads = self.model.roi_heads
        logits, deltas = heads.box_predictor(heads.box_head(heads.pool_box_features(features, [proposals], pool=pool_by_level)))
        boxes = heads.box_coder.decode(deltas, proposals)
        scores = F.softmax(logits, dim=-1)
        keep = _finite_rows(boxes, scores)
        person = scores[:, 0]
        boxes = _clip(boxes, limits)
        keep = keep & (person > score_threshold)
        boxes, index = _select(boxes, keep)
        person = person.index_select(0, index)
        chosen = NonMaxSuppression.apply(boxes, person, heads.config.nms_threshold_test, max_detections)
        kept = boxes.index_select(0, chosen)
        if heads.config.box_vote_iou is not None:
            kept = vote_boxes(kept, boxes, person, heads.config.box_vote_iou)
        return kept, person.index_select(0, chosen)

    @staticmethod
    def choose_boxes(det_boxes: torch.Tensor, det_scores: torch.Tensor, given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The given boxes (score 1) when there are any, else the detections. Without a
        data-dependent branch: both are concatenated and one contiguous range is kept."""
        boxes = torch.cat((det_boxes, given))
        scores = torch.cat((det_scores, torch.ones_like(given[:, 0])))
        position = torch.ones_like(scores).cumsum(0) - 1
        det_count = torch.ones_like(det_scores).sum()
        given_count = torch.ones_like(given[:, 0]).sum()
        start = det_count * given_count.clamp(max=1)
        chosen, index = _select(boxes, (position >= start) & (position < det_count + given_count))
        return chosen, scores.index_select(0, index)
