"""The steps of the exported graph that have one ONNX operator each (TopK with a dynamic k,
NonMaxSuppression, RoiAlign), as autograd Functions: in eager mode they run this package's own
kernels, so tracing sees real shapes; when torch.onnx traces them, `symbolic` emits the
standard operator. No custom domain: every node is in ONNX's default opset.
"""
from __future__ import annotations

import torch

from ..ops.nms import nms
from ..ops.roi_align import roi_align


def _int64_constant(g, value: int):
    return g.op("Constant", value_t=torch.tensor([value], dtype=torch.int64))


class TopK(torch.autograd.Function):
    """Values and indices of the min(k, n) largest of a 1-D tensor, largest first; ties keep
    the lower index first (ONNX TopK's rule, and a stable sort's)."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.sort(values, descending=True, stable=True).indices[: min(k, values.shape[0])]
        return values[order], order

    @staticmethod
    def symbolic(g, values, k: int):
        count = g.op("Min", g.op("Shape", values), _int64_constant(g, k))
        return g.op("TopK", values, count, axis_i=0, largest_i=1, sorted_i=1, outputs=2)


class NonMaxSuppression(torch.autograd.Function):
    """Indices of the (N, 4) XYXY boxes kept by greedy NMS (a box is dropped when its IoU with
    a kept, higher-scoring box is > iou_threshold), best first, at most `max_kept` (an int64
    scalar tensor, so that it can be a graph input)."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_kept: torch.Tensor) -> torch.Tensor:
        return nms(boxes, scores, iou_threshold)[: int(max_kept)]

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, max_kept):
        batched_boxes = g.op("Unsqueeze", boxes, _int64_constant(g, 0))
        batched_scores = g.op("Unsqueeze", g.op("Unsqueeze", scores, _int64_constant(g, 0)), _int64_constant(g, 0))
        limit = g.op("Reshape", g.op("Cast", max_kept, to_i=7), _int64_constant(g, 1))  # 7: int64
        threshold = g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        # (M, 3) rows of [batch, class, box]; the box column is what we keep.
        selected = g.op("NonMaxSuppression", batched_boxes, batched_scores, limit, threshold, center_point_box_i=0)
        column = g.op("Gather", selected, _int64_constant(g, 2), axis_i=1)
        return g.op("Reshape", column, _int64_constant(g, -1))


class RoIAlign(torch.autograd.Function):
    """(R, C, P, P) average of bilinear samples per bin of (R, 4) XYXY boxes on a (1, C, H, W)
    map. aligned=False is ONNX's output_half_pixel mode (boxes at least one pixel wide),
    aligned=True its half_pixel mode; sampling_ratio 0 is adaptive in both."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, boxes: torch.Tensor, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool) -> torch.Tensor:
        rois = torch.cat((boxes.new_zeros((boxes.shape[0], 1)), boxes), dim=1)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def symbolic(g, features, boxes, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool):
        # Every box comes from the one image of the batch: batch index 0 for all.
        count = g.op("Slice", g.op("Shape", boxes), _int64_constant(g, 0), _int64_constant(g, 1))
        batch_index = g.op("ConstantOfShape", count, value_t=torch.tensor([0], dtype=torch.int64))
        return g.op(
            "RoiAlign", features, boxes, batch_index,
            coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
            mode_s="avg", output_height_i=output_size, output_width_i=output_size,
            sampling_ratio_i=sampling_ratio, spatial_scale_f=spatial_scale,
        )
