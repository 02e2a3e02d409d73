"""Comparing part maps pixel by pixel: the confusion of two label arrays and the mean IoU over
the body parts that occur (background left out, so small people do not make every pair look
alike). Training's held-out part mIoU and compare's agreement between models both use it.
"""
from __future__ import annotations

import numpy as np

from ..definitions import NUM_PART_LABELS, PART_SYMMETRY, SELF_SYMMETRIC_PARTS


def part_confusion(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(25, 25) int64 pixel counts [truth label, predicted label] over two label arrays of one shape."""
    pairs = truth.astype(np.int64).reshape(-1) * NUM_PART_LABELS + predicted.astype(np.int64).reshape(-1)
    return np.bincount(pairs, minlength=NUM_PART_LABELS * NUM_PART_LABELS).reshape(NUM_PART_LABELS, NUM_PART_LABELS)


def part_overlaps(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intersections, unions) of parts 1..24 from a confusion matrix: two (24,) int64 arrays."""
    intersections = np.diag(confusion)[1:]
    unions = confusion.sum(axis=0)[1:] + confusion.sum(axis=1)[1:] - intersections
    return intersections, unions


def mean_part_iou(intersections: np.ndarray, unions: np.ndarray) -> float | None:
    """Mean IoU over the parts found by either side (unions > 0); None where neither found any."""
    found = unions > 0
    return float(np.mean(intersections[found] / unions[found])) if found.any() else None


def part_miou(confusion: np.ndarray) -> float | None:
    """Mean IoU over the parts 1..24 that occur in the truth or the prediction (None if none)."""
    return mean_part_iou(*part_overlaps(confusion))


def left_right_confusion(confusion: np.ndarray) -> list[tuple[int, int, float]]:
    """For every pair of mirror parts (a, b), a < b (left/right; the torso's pair is back/front
    and the head's right/left as DensePose numbers them): the share of the pair's true body
    pixels, labelled as one of the two, that got the other one. NaN if neither occurs."""
    mirrored = {tuple(sorted((p, q))) for p, q in enumerate(PART_SYMMETRY) if p > 0 and p != q}
    pairs = []
    for a, b in sorted(mirrored | {SELF_SYMMETRIC_PARTS}):
        swapped = confusion[a, b] + confusion[b, a]
        total = swapped + confusion[a, a] + confusion[b, b]
        pairs.append((a, b, float(swapped / total) if total else float("nan")))
    return pairs
