"""Temporal smoothing of tracked DensePose results: steadier boxes, and part labels and U, V that
stop flickering without smearing moving limbs.

Each person (track, see `video.tracking`) is smoothed on their own. The pixels of the person's
chart in frame t are followed into the neighbouring frames by dense optical flow (OpenCV's
Farneback, between consecutive frames, chained), so each pixel collects what the neighbouring
frames predicted for the same point of the scene, however the person, their limbs or the camera
moved. Each pixel then takes the part most of those frames give it (the frame itself weighs 1.5,
each neighbour 1), and U, V averaged over the frames that agree with that part.

Two modes:
- "centred" (files): the window is frames t-4..t+4, the earlier ones as already smoothed; the box
  is (previous + 2 x current + next) / 4, exact for steady motion (the detected box where the
  person is missing in a neighbouring frame). Latency: 4 frames (160 ms at
  25 fps), and the frames in between are held in memory.
- "causal" (streams, webcams): frames t-3..t as predicted, no latency; the box follows an
  alpha-beta filter (half measured, half predicted from the smoothed motion).
Measured with `benchmarks/video_flicker.py` (docs/video.md). Costs: two optical flows per frame
(about 0.05 s each for 512x512 on one CPU core) and the voting. Confidence maps are not
smoothed: a smoothed result has none (nor a cascade model's mask).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
import torch

from ..definitions import NUM_PART_LABELS
from ..postprocessing import integer_boxes
from ..results import ChartResult, DensePoseResult

TemporalMode = Literal["centred", "causal"]
TEMPORAL_MODES: tuple[str, ...] = ("centred", "causal")
CENTRED_RADIUS = 4  # frames before and after
CAUSAL_RADIUS = 3  # frames before
OWN_FRAME_WEIGHT = 1.5  # a neighbouring frame weighs 1


@dataclass(frozen=True)
class _Person:
    """One track's chart in one frame, with the float box it was drawn in."""

    box: np.ndarray  # (4,) XYXY float64
    chart: ChartResult


@dataclass
class _Frame:
    image: np.ndarray
    result: DensePoseResult
    people: dict[int, _Person]  # track -> as predicted
    grey: np.ndarray
    to_next: np.ndarray | None = None  # (H, W, 2) flow from this frame to the next
    to_previous: np.ndarray | None = None  # (H, W, 2) flow from this frame to the previous
    smoothed: dict[int, _Person] | None = None  # track -> as smoothed (centred mode)


class TemporalSmoother:
    """Feed `push(image, result)` the tracked results of one video in order; it returns the
    (image, smoothed result) pairs that are ready, in order (centred: `latency` frames later).
    `flush()` returns the rest at the end. Memory: 2 x CENTRED_RADIUS + 1 frames at most."""

    def __init__(self, mode: TemporalMode = "centred"):
        if mode not in TEMPORAL_MODES:
            raise ValueError(f"temporal mode must be one of {', '.join(TEMPORAL_MODES)}, not {mode!r}")
        self.mode = mode
        self.before = CENTRED_RADIUS if mode == "centred" else CAUSAL_RADIUS
        self.after = CENTRED_RADIUS if mode == "centred" else 0
        self._frames: deque[_Frame] = deque()  # the window: past frames, the next to emit, future frames
        self._next = 0  # index in _frames of the next frame to emit
        self._velocity: dict[int, np.ndarray] = {}  # causal boxes: track -> smoothed motion per frame
        self._last_box: dict[int, np.ndarray] = {}  # causal boxes: track -> last smoothed box

    @property
    def latency(self) -> int:
        """Frames between a frame's arrival and its smoothed result."""
        return self.after

    def push(self, image: np.ndarray, result: DensePoseResult) -> list[tuple[np.ndarray, DensePoseResult]]:
        """`image`: the frame (H, W, 3) uint8 RGB; `result`: its tracked detections."""
        if result.track_ids is None:
            raise ValueError("temporal smoothing needs tracked results (video.tracking.Tracker)")
        frame = _Frame(image, result, _people(result), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        if self._frames:
            last = self._frames[-1]
            if last.grey.shape == frame.grey.shape:
                last.to_next = _flow(last.grey, frame.grey)
                frame.to_previous = _flow(frame.grey, last.grey)
        self._frames.append(frame)
        ready = []
        while self._next < len(self._frames) and len(self._frames) - 1 - self._next >= self.after:
            ready.append(self._emit())
        return ready

    def flush(self) -> list[tuple[np.ndarray, DensePoseResult]]:
        ready = []
        while self._next < len(self._frames):
            ready.append(self._emit())
        self._frames.clear()
        self._next = 0
        return ready

    def _emit(self) -> tuple[np.ndarray, DensePoseResult]:
        frames, t = list(self._frames), self._next
        current = frames[t]
        boxes, charts, smoothed = [], [], {}
        for track, person in current.people.items():
            box = self._box(track, frames, t)
            grid = _grid(box)
            layers = []
            for s in range(max(0, t - self.before), min(len(frames), t + self.after + 1)):
                source = frames[s].smoothed if (s < t and frames[s].smoothed is not None) else frames[s].people
                other = source.get(track)
                if other is None:
                    continue
                positions = _follow(frames, t, s, grid)
                if positions is None:
                    continue
                labels, uv = _sample(other, *positions)
                layers.append((OWN_FRAME_WEIGHT if s == t else 1.0, labels, uv))
            labels = _vote(layers, grid)
            chart = ChartResult(x=grid[0], y=grid[1], labels=labels, uv=_averaged_uv(labels, layers))
            boxes.append(box)
            charts.append(chart)
            smoothed[track] = _Person(box, chart)
        if self.mode == "centred":
            current.smoothed = smoothed
        for state in (self._velocity, self._last_box):
            for track in [k for k in state if k not in current.people]:
                del state[track]  # a track absent for a frame starts afresh when it returns
        self._next += 1
        while self._next > self.before:  # frames older than the window are no longer needed
            self._frames.popleft()
            self._next -= 1
        result = replace(current.result, boxes=np.array(boxes, np.float32).reshape(-1, 4), charts=charts)
        return current.image, result

    def _box(self, track: int, frames: list[_Frame], t: int) -> np.ndarray:
        box = frames[t].people[track].box
        if self.mode == "centred":
            # Both neighbours or neither: a one-sided mean would lag behind a moving person.
            near = [frames[s].people.get(track) if 0 <= s < len(frames) else None for s in (t - 1, t + 1)]
            if any(p is None for p in near):
                return box
            return (near[0].box + 2.0 * box + near[1].box) / 4.0
        last = self._last_box.get(track)
        if last is not None:
            velocity = self._velocity.get(track, np.zeros(4))
            box = 0.5 * box + 0.5 * (last + velocity)
            self._velocity[track] = 0.5 * velocity + 0.5 * (box - last)
        self._last_box[track] = box
        return box


def _people(result: DensePoseResult) -> dict[int, _Person]:
    return {int(track): _Person(box.astype(np.float64), chart)
            for track, box, chart in zip(result.instance_ids(), result.boxes, result.charts)}


def _flow(frame: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(H, W, 2) where each pixel of `frame` is in `other`, as an offset (Farneback)."""
    return cv2.calcOpticalFlowFarneback(frame, other, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _grid(box: np.ndarray) -> tuple[int, int, int, int]:
    """The chart grid (x, y, w, h) of a float box, as results anchor charts (ChartResult)."""
    x, y, width, height = integer_boxes(torch.from_numpy(np.asarray(box, np.float64).reshape(1, 4)))[0].tolist()
    return x, y, width, height


def _follow(frames: list[_Frame], t: int, s: int, grid: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Image positions (x, y), each (h, w) float32, in frame s of the pixel centres of `grid` in
    frame t, following the flow from frame to frame; None where a flow is missing."""
    x, y, width, height = grid
    px = np.broadcast_to(np.arange(x, x + width, dtype=np.float32) + 0.5, (height, width)).copy()
    py = np.broadcast_to(np.arange(y, y + height, dtype=np.float32)[:, None] + 0.5, (height, width)).copy()
    step = 1 if s > t else -1
    for a in range(t, s, step):
        flow = frames[a].to_next if step == 1 else frames[a].to_previous
        if flow is None:
            return None
        # The flow is sampled at pixel-centre coordinates (pixel j's centre is j + 0.5).
        dx = cv2.remap(flow[..., 0], px - 0.5, py - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        dy = cv2.remap(flow[..., 1], px - 0.5, py - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        px, py = px + dx, py + dy
    return px, py


def _sample(person: _Person, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chart's label and U, V at image positions (nearest chart pixel; outside: background)."""
    chart = person.chart
    columns = np.floor(px - chart.x).astype(np.int64)
    rows = np.floor(py - chart.y).astype(np.int64)
    inside = (columns >= 0) & (rows >= 0) & (columns < chart.width) & (rows < chart.height)
    columns, rows = np.clip(columns, 0, chart.width - 1), np.clip(rows, 0, chart.height - 1)
    labels = np.where(inside, chart.labels[rows, columns], 0).astype(np.uint8)
    uv = np.where(inside[None], chart.uv[:, rows, columns], 0.0).astype(np.float32)
    return labels, uv


def _vote(layers: list[tuple[float, np.ndarray, np.ndarray]], grid: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) uint8: each pixel's part with the most weight over the layers."""
    votes = np.zeros((NUM_PART_LABELS, grid[3] * grid[2]), np.float64)  # background and the parts
    columns = np.arange(grid[3] * grid[2])
    for weight, labels, _ in layers:
        votes[labels.reshape(-1).astype(np.int64), columns] += weight
    return votes.argmax(axis=0).reshape(grid[3], grid[2]).astype(np.uint8)


def _averaged_uv(labels: np.ndarray, layers: list[tuple[float, np.ndarray, np.ndarray]]) -> np.ndarray:
    """U, V averaged over the layers that give each pixel its final part (weights as given)."""
    total = np.zeros((2, *labels.shape), np.float64)
    weight = np.zeros(labels.shape, np.float64)
    for w, layer_labels, layer_uv in layers:
        agree = (layer_labels == labels) & (labels > 0)
        total += w * agree * layer_uv
        weight += w * agree
    return np.where(weight > 0, total / np.maximum(weight, 1e-12), 0.0).astype(np.float32)
