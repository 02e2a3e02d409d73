"""Greedy matching of one image's detections to its persons at every threshold (as
DensePoseCocoEval.evaluateImg does), with the DensePose-specific ignore rules."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# An unmatched detection whose box overlaps an unmatched person this much takes that person's
# ignore flag: detections of persons without DensePose points are not false positives.
BOX_IOU_FOR_UNANNOTATED = 0.8


@dataclass(frozen=True)
class ImageMatches:
    """Outcome for one image, category and area range; detections in descending score order."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool: matched to a person at threshold t
    ignored: np.ndarray  # (T, D) bool: neither true nor false positive at threshold t
    person_ignored: np.ndarray  # (G,) bool: not counted in recall


def _last_best(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per row, the index of the largest eligible value, the LAST one on ties (the official
    scan replaces its best on >=)."""
    masked = np.where(eligible, values, -np.inf)
    return masked.shape[-1] - 1 - np.argmax(masked[..., ::-1], axis=-1)


def match_image(
    similarity: np.ndarray,
    box_iou: np.ndarray,
    scores: np.ndarray,
    detection_areas: np.ndarray,
    person_ignored: np.ndarray,
    person_crowd: np.ndarray,
    person_areas: np.ndarray,
    area_range: tuple[float, float],
    thresholds: np.ndarray,
) -> ImageMatches:
    """Match detections (rows of `similarity` / `box_iou`, already sorted by descending score
    and cut to the first 20) to persons (columns), as the official evaluator does:

    * a person outside the area range is ignored for this range;
    * at each threshold t, each detection in turn takes the still-free (or crowd) person of
      highest similarity >= t (similarity 0 never matches), non-ignored persons first;
    * a detection still unmatched at the LAST threshold takes, at all thresholds, the ignore
      flag of the free person its box overlaps best with box IoU >= 0.8 (and is recorded as
      matched at that threshold when the person is ignored);
    * when every person of the image is ignored (or there is none), all detections are ignored;
    * an unmatched detection outside the area range is ignored.
    """
    thresholds = np.asarray(thresholds, np.float64)
    low, high = area_range
    ignored_person = np.asarray(person_ignored, bool) | (person_areas < low) | (person_areas > high)
    order = np.argsort(ignored_person, kind="stable")  # ignored persons last
    ignored_person, crowd = ignored_person[order], np.asarray(person_crowd, bool)[order]
    similarity, box_iou = similarity[:, order], box_iou[:, order]
    num_thresholds, num_dets, num_persons = len(thresholds), len(scores), len(order)

    person_taken = np.zeros((num_thresholds, num_persons), bool)
    matched = np.zeros((num_thresholds, num_dets), bool)
    ignored = np.full((num_thresholds, num_dets), bool(np.all(ignored_person)))
    if num_dets and num_persons:
        start = np.minimum(thresholds, 1 - 1e-10)[:, None]
        rows = np.arange(num_thresholds)
        for det in range(num_dets):
            values = similarity[det][None, :]
            eligible = (~person_taken | crowd) & (values >= start) & (values != 0)
            # Scanning stops at the first ignored person once a regular one matched.
            regular = eligible & ~ignored_person
            candidates = np.where(regular.any(axis=1, keepdims=True), regular, eligible)
            found = candidates.any(axis=1)
            best = _last_best(np.broadcast_to(values, candidates.shape), candidates)
            matched[found, det] = True
            ignored[found, det] = ignored_person[best[found]]
            person_taken[rows[found], best[found]] = True

        last = num_thresholds - 1
        for det in np.flatnonzero(~matched[last]):
            eligible = (~person_taken[last] | crowd) & (box_iou[det] >= BOX_IOU_FOR_UNANNOTATED)
            if not eligible.any():
                continue
            person = int(_last_best(box_iou[det], eligible))
            ignored[:, det] = ignored_person[person]
            if ignored_person[person]:
                matched[last, det] = True
                person_taken[last, person] = True

    outside = (detection_areas < low) | (detection_areas > high)
    ignored |= ~matched & outside[None, :]
    return ImageMatches(np.asarray(scores, np.float64), matched, ignored, ignored_person)
