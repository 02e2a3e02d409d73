"""Animation-ready clips: a square crop that follows one person smoothly through a whole video,
resized to a fixed size and resampled to a fixed frame rate (MagicAnimate's driving videos are
512x512 at 25 fps).

The crop is planned once the whole video has been predicted, from the boxes of one track: the
person seen largest over the most frames (the greatest sum of box areas over the clip).
- Side: fixed for the clip, `margin` times the 95th percentile over frames of the person's
  larger box side, so the person stays whole when they stretch out or come closer and the
  crop never zooms in and out. At most the frame's longer side: a square wider than the frame's
  shorter side is padded with black.
- Centre: the box centre, filled in linearly where the person was not detected, smoothed over
  time by a centred Gaussian of `smoothing` seconds (averaging without lag: no per-frame jumps,
  and the crop does not trail a walking person); kept inside the frame where the square fits in
  it, before smoothing, so that the crop also starts and stops moving gently at the frame's
  edges. Nobody in the whole video: the centred square.
Frames are resampled by time: output frame j shows the source frame nearest to time j / fps, so
a 30 fps clip loses every sixth frame and a 24 fps one repeats every 24th; the duration stays.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..results import DensePoseResult


@dataclass(frozen=True)
class ClipSpec:
    size: int = 512  # output width and height in pixels
    fps: float = 25.0  # output frame rate
    margin: float = 1.2  # crop side / the person's larger box side (95th percentile)
    smoothing: float = 0.5  # seconds: standard deviation of the Gaussian on the crop centre


CLIP_PRESETS: dict[str, ClipSpec] = {"magicanimate": ClipSpec(size=512, fps=25.0)}
MIN_SIDE = 16  # pixels: the crop of a tiny person is never smaller than this


def resample_indices(frame_count: int, source_fps: float, target_fps: float) -> np.ndarray:
    """(M,) int64 source frame of each output frame: the one nearest in time, M = the duration
    times `target_fps`, rounded up."""
    if frame_count <= 0:
        return np.zeros(0, np.int64)
    output_count = max(int(np.ceil(frame_count * target_fps / source_fps - 1e-6)), 1)
    times = np.arange(output_count) / target_fps
    return np.minimum(np.floor(times * source_fps + 0.5 + 1e-9).astype(np.int64), frame_count - 1)


def boxes_by_track(result: DensePoseResult) -> dict[int, np.ndarray]:
    """A tracked frame's boxes, (4,) float64 XYXY by track id: all `main_track_boxes` needs of it."""
    return {int(track): box for track, box in zip(result.instance_ids(), np.asarray(result.boxes, np.float64).reshape(-1, 4))}


def main_track_boxes(frames: list[dict[int, np.ndarray]]) -> np.ndarray:
    """(F, 4) float64 box of the main person (the track of greatest summed box area) in each of
    the frames' `boxes_by_track`, NaN where they are not detected (all NaN when nobody is)."""
    tracks: dict[int, dict[int, np.ndarray]] = {}
    for frame, boxes in enumerate(frames):
        for track, box in boxes.items():
            tracks.setdefault(track, {})[frame] = box
    path = np.full((len(frames), 4), np.nan)
    if tracks:
        def total_area(boxes: dict[int, np.ndarray]) -> float:
            return sum(float((box[2] - box[0]) * (box[3] - box[1])) for box in boxes.values())

        for frame, box in max(tracks.values(), key=total_area).items():
            path[frame] = box
    return path


def plan_crop(boxes: np.ndarray, frame_size: tuple[int, int], fps: float, spec: ClipSpec) -> np.ndarray:
    """(F, 3) int64 crop window (x0, y0, side) in each frame, from the followed person's (F, 4)
    boxes (NaN rows where they are missing) in frames of `frame_size` (height, width)."""
    height, width = frame_size
    count = boxes.shape[0]
    seen = ~np.isnan(boxes).any(axis=1)
    if not seen.any():
        side = min(height, width)
        return np.tile([(width - side) // 2, (height - side) // 2, side], (count, 1)).astype(np.int64)
    extent = np.maximum(boxes[seen, 2] - boxes[seen, 0], boxes[seen, 3] - boxes[seen, 1])
    side = int(round(float(np.clip(spec.margin * np.percentile(extent, 95), MIN_SIDE, max(height, width)))))
    frames = np.arange(count)
    centres = []
    for low, high, length in ((0, 2, width), (1, 3, height)):
        centre = np.interp(frames, frames[seen], (boxes[seen, low] + boxes[seen, high]) / 2)
        if side > length:
            centres.append(np.full(count, length / 2))
            continue
        # Kept inside the frame before smoothing, so the crop also eases into and out of the frame's edge.
        centre = np.clip(centre, side / 2, length - side / 2)
        centres.append(gaussian_filter1d(centre, sigma=max(spec.smoothing * fps, 1e-3), mode="nearest"))
    x0 = np.rint(centres[0] - side / 2).astype(np.int64)
    y0 = np.rint(centres[1] - side / 2).astype(np.int64)
    return np.stack([x0, y0, np.full(count, side, np.int64)], axis=1)


def crop_square(picture: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """The (x0, y0, side) window of an (H, W, 3) picture, black outside it, resized to size x size
    (area-averaged when shrinking)."""
    x0, y0, side = (int(value) for value in window)
    height, width = picture.shape[:2]
    square = np.zeros((side, side, picture.shape[2]), picture.dtype)
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if right > left and bottom > top:
        square[top - y0 : bottom - y0, left - x0 : right - x0] = picture[top:bottom, left:right]
    if side == size:
        return square
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
