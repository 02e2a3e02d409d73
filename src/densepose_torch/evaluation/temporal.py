"""How much DensePose flickers along a video with dense ground truth (synthetic clips).

Consecutive frames are paired pixel by pixel through the truth: a body pixel of frame t+1 is
paired with the pixel of frame t that shows the same point of the same person's body (same
instance, same true part, nearest true U, V within `UV_MATCH_TOLERANCE`); a point that was hidden
in frame t has no pair. On these pairs the true part never changes, so
- the flicker rate is the share of pairs whose predicted part changes (background included: a
  hand that vanishes for one frame counts);
- the U/V jitter is how far the predicted U, V move beyond the true motion, |(pred(t+1) - pred(t))
  - (truth(t+1) - truth(t))| over pairs predicted as the true part in both frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..results import DenseMaps

UV_MATCH_TOLERANCE = 0.02  # U, V distance under which two pixels show the same body point


@dataclass(frozen=True)
class FramePairs:
    """Pixels (flat indices) of frame t and frame t+1 that show the same body point."""

    before: np.ndarray  # (P,) int64
    after: np.ndarray  # (P,) int64


def corresponding_pixels(truth_before: DenseMaps, truth_after: DenseMaps) -> FramePairs:
    """Pairs of pixels showing the same body point in two consecutive frames (module docstring)."""
    before_key = _keys(truth_before)
    after_key = _keys(truth_after)
    pairs_before, pairs_after = [], []
    for key in np.intersect1d(np.unique(after_key[after_key > 0]), np.unique(before_key[before_key > 0])):
        source = np.flatnonzero(before_key == key)
        target = np.flatnonzero(after_key == key)
        tree = cKDTree(np.stack([truth_before.U.reshape(-1)[source], truth_before.V.reshape(-1)[source]], axis=1))
        distance, nearest = tree.query(np.stack([truth_after.U.reshape(-1)[target], truth_after.V.reshape(-1)[target]], axis=1))
        close = distance <= UV_MATCH_TOLERANCE
        pairs_before.append(source[nearest[close]])
        pairs_after.append(target[close])
    if not pairs_after:
        return FramePairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return FramePairs(np.concatenate(pairs_before), np.concatenate(pairs_after))


def _keys(truth: DenseMaps) -> np.ndarray:
    """(H*W,) int64: instance * 32 + part on body pixels, 0 elsewhere."""
    part = truth.I.reshape(-1).astype(np.int64)
    return np.where(part > 0, truth.instance.reshape(-1).astype(np.int64) * 32 + part, 0)


@dataclass
class FlickerCounts:
    """Sums over frame pairs; `rate` and `jitter` give the figures."""

    pairs: int = 0
    changed: int = 0
    steady: int = 0  # pairs predicted as the true part in both frames
    jitter_sum: float = 0.0

    def add(self, pairs: FramePairs, truth_before: DenseMaps, truth_after: DenseMaps,
            predicted_before: DenseMaps, predicted_after: DenseMaps) -> None:
        part_before = predicted_before.I.reshape(-1)[pairs.before]
        part_after = predicted_after.I.reshape(-1)[pairs.after]
        true_part = truth_after.I.reshape(-1)[pairs.after]
        self.pairs += len(pairs.after)
        self.changed += int((part_before != part_after).sum())
        steady = (part_before == true_part) & (part_after == true_part)
        self.steady += int(steady.sum())
        if steady.any():
            moved = np.stack([_at(predicted_after, pairs.after) - _at(predicted_before, pairs.before),
                              _at(truth_after, pairs.after) - _at(truth_before, pairs.before)])
            self.jitter_sum += float(np.linalg.norm(moved[0][:, steady] - moved[1][:, steady], axis=0).sum())

    @property
    def rate(self) -> float | None:
        return self.changed / self.pairs if self.pairs else None

    @property
    def jitter(self) -> float | None:
        return self.jitter_sum / self.steady if self.steady else None


def _at(maps: DenseMaps, pixels: np.ndarray) -> np.ndarray:
    """(2, P) U, V at flat pixel indices."""
    return np.stack([maps.U.reshape(-1)[pixels], maps.V.reshape(-1)[pixels]]).astype(np.float64)


def track_of_people(predicted: DenseMaps, truth: DenseMaps) -> dict[int, int]:
    """True person -> the predicted instance (track id) that covers most of their pixels, among
    the tracks with at least half their body pixels on that person (a duplicate detection of
    part of a person does not take them over unless it covers more of them)."""
    ids = predicted.instance.reshape(-1).astype(np.int64)
    people = truth.instance.reshape(-1).astype(np.int64)
    body = (ids > 0) & (predicted.I.reshape(-1) > 0)
    best: dict[int, tuple[int, int]] = {}  # person -> (pixels, track)
    for track in np.unique(ids[body]):
        under = people[body & (ids == track)]  # the true person under each of the track's pixels
        counts = np.bincount(under)
        counts[0] = 0
        person = int(counts.argmax())
        if counts[person] > 0 and 2 * counts[person] >= len(under) and counts[person] > best.get(person, (0, 0))[0]:
            best[person] = (int(counts[person]), int(track))
    return {person: track for person, (_, track) in best.items()}


def identity_switches(history: list[dict[int, int]]) -> int:
    """How often a true person's track id changes along a video, given per frame the mapping of
    `track_of_people` (a person unmatched in a frame keeps their last id)."""
    last: dict[int, int] = {}
    switches = 0
    for tracks in history:
        for person, track in tracks.items():
            if person in last and last[person] != track:
                switches += 1
            last[person] = track
    return switches
