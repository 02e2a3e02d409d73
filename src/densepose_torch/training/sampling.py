"""Which anchors and proposals train which head, as detectron2 chooses them: IoU matching, balanced random
sampling, and the choice of DensePose ROIs.

Random draws use a torch.Generator per image (seeded from the image's stream position), so a
run is reproducible whatever the number of processes or a resume point.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops.boxes import box_iou


def match(iou: torch.Tensor, thresholds: tuple[float, ...], labels: tuple[int, ...], allow_low_quality: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """detectron2's Matcher on a (G, N) IoU matrix: for every column the best ground truth and a
    label from the interval its IoU falls in (`thresholds` split [0, 1] into len(labels)
    half-open intervals [low, high)). With `allow_low_quality`, the columns that are the best
    match of some ground truth get label 1 whatever their IoU. No ground truth: all label 0."""
    if iou.shape[0] == 0:
        n = iou.shape[1]
        return torch.zeros(n, dtype=torch.int64, device=iou.device), torch.full((n,), labels[0], dtype=torch.int8, device=iou.device)
    best, matches = iou.max(dim=0)
    match_labels = torch.empty_like(matches, dtype=torch.int8)
    bounds = (float("-inf"),) + tuple(thresholds) + (float("inf"),)
    for label, low, high in zip(labels, bounds[:-1], bounds[1:]):
        match_labels[(best >= low) & (best < high)] = label
    if allow_low_quality:
        best_per_gt = iou.max(dim=1).values
        columns = torch.nonzero(iou == best_per_gt[:, None])[:, 1]
        match_labels[columns] = 1
    return matches, match_labels


def subsample(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, background: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positive and negative indices: at most num_samples * positive_fraction positives
    (label not -1 and not `background`), negatives (label == background) filling the rest."""
    positive = torch.nonzero((labels != -1) & (labels != background)).flatten()
    negative = torch.nonzero(labels == background).flatten()
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    pos_pick = torch.randperm(positive.numel(), generator=generator)[:num_pos].to(labels.device)
    neg_pick = torch.randperm(negative.numel(), generator=generator)[:num_neg].to(labels.device)
    return positive[pos_pick], negative[neg_pick]


def label_anchors(
    anchors: torch.Tensor, gt_boxes: torch.Tensor, thresholds: tuple[float, float], num_samples: int, positive_fraction: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RPN targets of one image: per anchor 1 (sampled positive), 0 (sampled negative) or -1
    (not sampled / between the thresholds), and the index of its matched ground truth."""
    matches, labels = match(box_iou(gt_boxes, anchors), thresholds, (0, -1, 1), allow_low_quality=True)
    positive, negative = subsample(labels, num_samples, positive_fraction, 0, generator)
    sampled = torch.full_like(labels, -1)
    sampled[positive] = 1
    sampled[negative] = 0
    return sampled, matches


@dataclass
class SampledROIs:
    """Proposals chosen to train the box head of one image."""

    boxes: torch.Tensor  # (R, 4) proposal boxes
    classes: torch.Tensor  # (R,) 0 = person, 1 = background
    matched: torch.Tensor  # (R,) index of the matched ground truth (meaningless for background)
    iou: torch.Tensor  # (R,) IoU with that ground truth


def sample_rois(
    proposals: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float, num_samples: int, positive_fraction: float,
    generator: torch.Generator,
) -> SampledROIs:
    """The ground-truth boxes are appended to the proposals, every proposal is matched (IoU >=
    threshold: person, else background), then foreground and background are sampled, foreground
    first."""
    boxes = torch.cat([proposals, gt_boxes.to(proposals.dtype)])
    iou = box_iou(gt_boxes, boxes)
    matches, labels = match(iou, (iou_threshold,), (0, 1), allow_low_quality=False)
    background = 1
    if gt_boxes.shape[0]:
        classes = torch.where(labels == 1, torch.zeros_like(matches), torch.full_like(matches, background))
        matched_iou = iou.gather(0, matches[None]).squeeze(0)
    else:
        classes = torch.full_like(matches, background)
        matched_iou = torch.zeros(boxes.shape[0], device=boxes.device)
    foreground, negative = subsample(classes, num_samples, positive_fraction, background, generator)
    keep = torch.cat([foreground, negative])
    return SampledROIs(boxes[keep], classes[keep], matches[keep], matched_iou[keep])


def select_densepose_rois(
    rois: SampledROIs, has_densepose: torch.Tensor, iou_threshold: float, limit: int | None, generator: torch.Generator
) -> torch.Tensor:
    """Indices of the sampled ROIs that train the DensePose head: foreground, IoU with their
    person > `iou_threshold`, and that person has DensePose annotations; at most `limit`
    (chosen at random) when a limit is set."""
    if has_densepose.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=rois.boxes.device)
    chosen = (rois.classes == 0) & (rois.iou > iou_threshold) & has_densepose[rois.matched]
    index = torch.nonzero(chosen).flatten()
    if limit is not None and index.numel() > limit:
        index = index[torch.randperm(index.numel(), generator=generator)[:limit].to(index.device)].sort().values
    return index
