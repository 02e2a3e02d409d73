"""Precision/recall over a dataset from per-image matches, and the summary figures
(COCO's accumulate/summarize as DensePoseCocoEval uses them)."""
from __future__ import annotations

import numpy as np

from .matching import ImageMatches

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
# The DensePose area ranges (no "small"): a person's `area`, a detection's box w * h.
AREA_RANGES = {"all": (0.0, 1e5**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e5**2)}
MAX_DETECTIONS = 20


def iou_thresholds(min_iou: float = 0.5) -> np.ndarray:
    """min_iou, min_iou + 0.05, ..., 0.95 (10 thresholds from 0.5; 16 from 0.2, the "APex"
    variant), computed as the official Params do."""
    return np.linspace(min_iou, 0.95, int(np.round((0.95 - min_iou) / 0.05)) + 1, endpoint=True)


def precision_recall(images: list[ImageMatches], num_thresholds: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Interpolated precision (T, 101) at the recall thresholds and final recall (T,), over
    images given in ascending image id order; None without any non-ignored person."""
    images = [image for image in images if image.scores.size or image.person_ignored.size]
    num_persons = sum(int(np.count_nonzero(~image.person_ignored)) for image in images)
    if num_persons == 0:
        return None
    if images:
        scores = np.concatenate([image.scores for image in images])
        matched = np.concatenate([image.matched for image in images], axis=1)
        ignored = np.concatenate([image.ignored for image in images], axis=1)
    else:
        scores, matched, ignored = np.zeros(0), np.zeros((num_thresholds, 0), bool), np.zeros((num_thresholds, 0), bool)
    order = np.argsort(-scores, kind="mergesort")
    matched, ignored = matched[:, order], ignored[:, order]
    true_pos = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)
    false_pos = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)
    num_dets = scores.size
    recall_curve = true_pos / num_persons
    precision_curve = true_pos / (true_pos + false_pos + np.spacing(1))
    # Precision made non-increasing in recall (the envelope from the right).
    precision_curve = np.maximum.accumulate(precision_curve[:, ::-1], axis=1)[:, ::-1]
    precision = np.zeros((num_thresholds, RECALL_THRESHOLDS.size))
    recall = np.zeros(num_thresholds)
    for t in range(num_thresholds):
        if num_dets == 0:
            continue
        recall[t] = recall_curve[t, -1]
        index = np.searchsorted(recall_curve[t], RECALL_THRESHOLDS, side="left")
        reached = index < num_dets
        precision[t, reached] = precision_curve[t, index[reached]]
    return precision, recall


def summarize(
    precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray, area_names: list[str]
) -> dict[str, float | None]:
    """AP, [AP20, AP30, AP40 when the thresholds reach down to them], AP50, AP75, APm, APl, AR,
    AR50, AR75, ARm, ARl in percent, from precision (T, R, K, A) and recall (T, K, A) holding
    -1 where a category / area range had no person; None where nothing was defined."""

    def mean_of(values: np.ndarray) -> float | None:
        defined = values[values > -1]
        return float(np.mean(defined)) * 100 if defined.size else None

    def figure(array: np.ndarray, threshold: float | None = None, area: str = "all") -> float | None:
        if threshold is not None:
            array = array[np.flatnonzero(np.abs(threshold - thresholds) < 0.001)]
        return mean_of(array[..., area_names.index(area)])

    lowest = float(np.min(thresholds))
    stats: dict[str, float | None] = {"AP": figure(precision)}
    for threshold, name in ((0.2, "AP20"), (0.3, "AP30"), (0.4, "AP40")):
        if lowest <= threshold + 0.001:
            stats[name] = figure(precision, threshold)
    stats.update(
        AP50=figure(precision, 0.5),
        AP75=figure(precision, 0.75),
        APm=figure(precision, area="medium"),
        APl=figure(precision, area="large"),
        AR=figure(recall),
        AR50=figure(recall, 0.5),
        AR75=figure(recall, 0.75),
        ARm=figure(recall, area="medium"),
        ARl=figure(recall, area="large"),
    )
    return stats
