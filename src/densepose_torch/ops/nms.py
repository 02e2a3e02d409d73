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


def _suppression_matrix(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """suppresses[i, j]: i comes before j and IoU(i, j) > threshold.

    IoU is computed as torchvision's CPU kernel does, term by term, so that ties with the
    threshold fall the same way."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    areas = (x2 - x1) * (y2 - y1)
    n = boxes.shape[0]
    later = torch.arange(n, device=boxes.device)
    rows = []
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        width = (torch.min(x2[start:stop, None], x2[None, :]) - torch.max(x1[start:stop, None], x1[None, :])).clamp_(min=0)
        height = (torch.min(y2[start:stop, None], y2[None, :]) - torch.max(y1[start:stop, None], y1[None, :])).clamp_(min=0)
        inter = width.mul_(height)
        iou = inter / (areas[start:stop, None] + areas[None, :] - inter)
        rows.append((iou > iou_threshold) & (later[start:stop, None] < later[None, :]))
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
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[_greedy_keep(_suppression_matrix(boxes[order].float(), iou_threshold))]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor | None, iou_threshold: float
) -> torch.Tensor:
    """NMS run independently within each group id (one pass per group, e.g. per FPN level);
    kept indices in descending score order (ties: lower index first)."""
    if groups is None:
        return nms(boxes, scores, iou_threshold)
    kept = []
    for group in torch.unique(groups).tolist():
        members = torch.nonzero(groups == group).flatten()
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    if not kept:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    keep = torch.sort(torch.cat(kept)).values
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
