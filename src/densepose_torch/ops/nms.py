"""Greedy non-maximum suppression, exactly torchvision's semantics, in plain torch.

Greedy NMS is sequential by definition (whether box j survives depends on which earlier boxes
survived), but the dependency is a strictly lower-triangular boolean system:
    keep[j] = not any(keep[i] and suppresses[i, j] for i < j).
Its unique solution is found by iterating the whole vector at once (Jacobi iteration on a
triangular system): after t sweeps the first t boxes are final, and in practice it settles after
as many sweeps as the longest chain of suppressions, a handful, instead of one step per box.
"""
from __future__ import annotations

import torch

# Above this many boxes the N x N suppression matrix is built block by block.
_BLOCK = 4096


def _suppression_matrix(boxes: torch.Tensor, iou_threshold: float, groups: torch.Tensor | None) -> torch.Tensor:
    """suppresses[i, j]: i comes before j and IoU(i, j) > threshold (same group only).

    IoU is computed as torchvision's CPU kernel does, term by term, so that ties with the
    threshold fall the same way."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    areas = (x2 - x1) * (y2 - y1)
    n = boxes.shape[0]
    rows = []
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        xx1 = torch.max(x1[start:stop, None], x1[None, :])
        yy1 = torch.max(y1[start:stop, None], y1[None, :])
        xx2 = torch.min(x2[start:stop, None], x2[None, :])
        yy2 = torch.min(y2[start:stop, None], y2[None, :])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[start:stop, None] + areas[None, :] - inter)
        block = iou > iou_threshold
        order = torch.arange(start, stop, device=boxes.device)[:, None] < torch.arange(n, device=boxes.device)[None, :]
        block &= order
        if groups is not None:
            block &= groups[start:stop, None] == groups[None, :]
        rows.append(block)
    return torch.cat(rows, dim=0)


def _greedy_keep(suppresses: torch.Tensor) -> torch.Tensor:
    n = suppresses.shape[0]
    keep = torch.ones(n, dtype=torch.bool, device=suppresses.device)
    weights = suppresses.to(torch.float32)
    for _ in range(n):
        # A box is suppressed iff a kept box before it overlaps it too much.
        hits = keep.to(torch.float32)[None, :] @ weights
        new_keep = hits[0] == 0
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept, in descending score order (ties: lower index first).
    A box is dropped when its IoU with a kept, higher-scoring box is > iou_threshold."""
    return batched_nms(boxes, scores, None, iou_threshold)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor | None, iou_threshold: float
) -> torch.Tensor:
    """NMS run independently within each group id; kept indices in descending score order."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_groups = groups[order] if groups is not None else None
    suppresses = _suppression_matrix(boxes[order].float(), iou_threshold, sorted_groups)
    keep = _greedy_keep(suppresses)
    return order[keep]
