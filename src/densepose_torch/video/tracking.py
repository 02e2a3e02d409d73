"""People tracked through a video: every detection gets the id of the person it continues.

A live track is compared with each detection of the next frame in two ways:
- overlap: the IoU of the detection's box with the box the track is expected at (its last box
  moved on by its recent velocity, for each frame since it was last seen); where that carries the
  box down to less than half the last box's area (a person walking out of the picture shrinks
  their box from one side, and carrying that on leaves a sliver), the better of that IoU and the
  IoU with the last box;
- appearance: the mean colour of the image on each body part of the person's chart, which
  DensePose gives for free (a red shirt stays on the torso however the person turns), compared
  on the parts both have.
Tracks and detections are paired by the assignment of least total cost (Hungarian), cost
1 - (overlap_weight * IoU + (1 - overlap_weight) * appearance similarity); a pair whose IoU is
below `min_iou` is never made. Tracks seen in at least `confirm_after` frames choose first; newer
ones get the detections left, so a one-off duplicate detection (part of a person found twice)
cannot take the person over later. A detection left unpaired starts a new track; ids count up
from 1 and are never reused. A track left unpaired survives `max_missed` frames: a person hidden for a
moment, or missed by the detector, keeps their id on coming back near where they were heading;
after that the track ends and a person coming back later gets a new id.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..definitions import NUM_PART_LABELS
from ..ops.boxes import box_iou
from ..results import DensePoseResult

MIN_PART_PIXELS = 20  # a part's mean colour counts for appearance from this many pixels on


@dataclass(frozen=True)
class TrackerConfig:
    min_iou: float = 0.2
    overlap_weight: float = 0.7
    max_missed: int = 10  # frames a track survives without a detection (0.4 s at 25 fps)
    confirm_after: int = 3  # frames a track must be seen in to choose before newer tracks
    colour_scale: float = 0.3  # RGB distance (0..1 per channel) at which two parts count as unlike
    smoothing: float = 0.7  # weight of a track's past in its velocity and appearance


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,) last seen XYXY
    velocity: np.ndarray  # (4,) per frame
    colours: np.ndarray  # (NUM_PART_LABELS, 3) mean colour per part
    seen: np.ndarray  # (NUM_PART_LABELS,) bool: parts with a colour
    last_frame: int
    hits: int = 1  # frames it was seen in


class Tracker:
    """Feed it the frames of one video in order: `update(image, result)` returns the result with
    `track_ids` set."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frame = -1

    def update(self, image: np.ndarray, result: DensePoseResult) -> DensePoseResult:
        """`image`: the frame (H, W, 3) uint8 RGB; `result`: its detections."""
        self._frame += 1
        cfg = self.config
        live = [t for t in self._tracks if self._frame - t.last_frame <= cfg.max_missed + 1]
        colours = [part_colours(image, chart) for chart in result.charts]
        confirmed = [i for i, t in enumerate(live) if t.hits >= cfg.confirm_after]
        newer = [i for i, t in enumerate(live) if t.hits < cfg.confirm_after]
        pairs = [(confirmed[r], c) for r, c in self._pair([live[i] for i in confirmed], result, colours, range(len(result)))]
        left = [d for d in range(len(result)) if d not in {c for _, c in pairs}]
        pairs += [(newer[r], c) for r, c in self._pair([live[i] for i in newer], result, colours, left)]
        ids = np.zeros(len(result), np.int64)
        for track_index, detection in pairs:
            track = live[track_index]
            self._follow(track, result.boxes[detection], colours[detection])
            ids[detection] = track.track_id
        for detection in np.flatnonzero(ids == 0):
            colour, seen = colours[detection]
            live.append(_Track(self._next_id, result.boxes[detection].astype(np.float64), np.zeros(4), colour, seen, self._frame))
            ids[detection] = self._next_id
            self._next_id += 1
        self._tracks = live
        return replace(result, track_ids=ids)

    def _pair(self, tracks: list[_Track], result: DensePoseResult, colours, detections) -> list[tuple[int, int]]:
        """(index in `tracks`, detection index) pairs among the given detections."""
        detections = list(detections)
        if not tracks or not detections:
            return []
        cfg = self.config
        last = np.stack([t.box for t in tracks])
        expected = last + np.stack([t.velocity * (self._frame - t.last_frame) for t in tracks])
        boxes = torch.from_numpy(result.boxes[detections].astype(np.float64))
        overlap = box_iou(torch.from_numpy(expected), boxes).numpy()
        shrunk = _area(expected) < 0.5 * _area(last)
        if shrunk.any():
            overlap[shrunk] = np.maximum(overlap[shrunk], box_iou(torch.from_numpy(last[shrunk]), boxes).numpy())
        likeness = np.array([[self._likeness(t, *colours[d]) for d in detections] for t in tracks])
        cost = 1.0 - (cfg.overlap_weight * overlap + (1.0 - cfg.overlap_weight) * likeness)
        cost[overlap < cfg.min_iou] = 1e6
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), detections[c]) for r, c in zip(rows, cols) if overlap[r, c] >= cfg.min_iou]

    def _likeness(self, track: _Track, colour: np.ndarray, seen: np.ndarray) -> float:
        both = track.seen & seen
        if not both.any():
            return 0.5  # nothing to compare: neither for nor against
        distance = np.linalg.norm(track.colours[both] - colour[both], axis=1)
        return float(np.clip(1.0 - distance / self.config.colour_scale, 0.0, 1.0).mean())

    def _follow(self, track: _Track, box: np.ndarray, colour_seen) -> None:
        keep = self.config.smoothing
        gap = self._frame - track.last_frame
        step = (box.astype(np.float64) - track.box) / gap
        track.velocity = keep * track.velocity + (1 - keep) * step
        track.box = box.astype(np.float64)
        track.last_frame = self._frame
        track.hits += 1
        colour, seen = colour_seen
        both = track.seen & seen
        track.colours[both] = keep * track.colours[both] + (1 - keep) * colour[both]
        fresh = seen & ~track.seen
        track.colours[fresh] = colour[fresh]
        track.seen |= seen


def _area(boxes: np.ndarray) -> np.ndarray:
    """(N,) area of (N, 4) XYXY boxes, 0 for those turned inside out."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def part_colours(image: np.ndarray, chart) -> tuple[np.ndarray, np.ndarray]:
    """(NUM_PART_LABELS, 3) mean RGB (0..1) of `image` on each part of `chart`, and which parts have
    at least MIN_PART_PIXELS pixels inside the image."""
    height, width = image.shape[:2]
    top, left = max(chart.y, 0), max(chart.x, 0)
    bottom, right = min(chart.y + chart.height, height), min(chart.x + chart.width, width)
    colours = np.zeros((NUM_PART_LABELS, 3))
    if bottom <= top or right <= left:
        return colours, np.zeros(NUM_PART_LABELS, bool)
    labels = chart.labels[top - chart.y : bottom - chart.y, left - chart.x : right - chart.x].reshape(-1).astype(np.int64)
    pixels = image[top:bottom, left:right].reshape(-1, 3).astype(np.float64) / 255.0
    counts = np.bincount(labels, minlength=NUM_PART_LABELS)[: NUM_PART_LABELS]
    for channel in range(3):
        colours[:, channel] = np.bincount(labels, weights=pixels[:, channel], minlength=NUM_PART_LABELS)[: NUM_PART_LABELS]
    seen = counts >= MIN_PART_PIXELS
    seen[0] = False  # background is not the person
    colours[seen] /= counts[seen, None]
    return colours, seen

