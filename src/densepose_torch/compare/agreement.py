"""Agreement between models without ground truth: pairwise part-map mIoU.

For two models, each body part c (1..24) gets IoU_c = |A = c and B = c| / |A = c or B = c|, the
counts summed over all images (full-image part maps I, `DensePoseResult.to_dense()`), and the
agreement is the mean IoU_c over the parts that either model found. Background is left out, so
small people do not make every pair look alike. Two models that found no body anywhere have no
agreement (None).
"""
from __future__ import annotations

import numpy as np

from ..definitions import NUM_PART_LABELS, NUM_PARTS
from ..evaluation.part_maps import mean_part_iou, part_confusion, part_overlaps


def pairwise_part_counts(part_maps: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-part intersections and unions of every pair of one image's part maps: two
    (M, M, 24) int64 arrays (zeros where a map is None, i.e. the model did not run)."""
    count = len(part_maps)
    intersections = np.zeros((count, count, NUM_PARTS), np.int64)
    unions = np.zeros((count, count, NUM_PARTS), np.int64)
    shapes = {part_map.shape for part_map in part_maps if part_map is not None}
    if len(shapes) > 1:
        raise ValueError(f"part maps of different sizes: {sorted(shapes)}")
    for i in range(count):
        if part_maps[i] is None:
            continue
        found = np.bincount(part_maps[i].astype(np.int64).ravel(), minlength=NUM_PART_LABELS)[1:]
        intersections[i, i] = unions[i, i] = found
        for j in range(i + 1, count):
            if part_maps[j] is not None:
                overlaps = part_overlaps(part_confusion(part_maps[j], part_maps[i]))
                intersections[i, j], unions[i, j] = overlaps
                intersections[j, i], unions[j, i] = overlaps
    return intersections, unions


def mean_iou(intersections: np.ndarray, unions: np.ndarray) -> list[list[float | None]]:
    """The (M, M) agreement matrix from counts summed over images (None: no body pixel in either)."""
    count = intersections.shape[0]
    matrix: list[list[float | None]] = [[None] * count for _ in range(count)]
    for i in range(count):
        for j in range(count):
            matrix[i][j] = mean_part_iou(intersections[i, j], unions[i, j])
    return matrix


def mean_agreement(matrix: list[list[float | None]]) -> list[float | None]:
    """Each model's mean agreement with the others (None without another model to compare)."""
    means = []
    for i, row in enumerate(matrix):
        values = [value for j, value in enumerate(row) if j != i and value is not None]
        means.append(float(np.mean(values)) if values else None)
    return means
