"""Dense DensePose ground truth of one person in its box frame, for training on every body pixel.

Synthetic sets know the part, U and V of every pixel (`dense/NNNNNN.npz`, and the instance map
says whose pixel it is). A person's truth is resampled to a DENSE_FRAME x DENSE_FRAME grid over
its box (nearest pixel at each cell centre, the way dp_x / dp_y live in the box scaled to 256),
so that it is augmented with the box and resampled to each proposal like the coarse masks.
Cells over another person or the background hold part 0: no supervision there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..results import DenseMaps

DENSE_FRAME = 128  # cells per side of a person's box; the chart heads predict 56 x 56 or less


@dataclass(frozen=True)
class BoxDenseTruth:
    """Part (0 = not this person's body), U and V at the cell centres of the person's box."""

    parts: np.ndarray  # (D, D) uint8 0..24
    u: np.ndarray  # (D, D) float32
    v: np.ndarray  # (D, D) float32


def box_dense_truth(maps: DenseMaps, instance_id: int, box: np.ndarray, size: int = DENSE_FRAME) -> BoxDenseTruth:
    """The truth of person `instance_id` (its pixels in `maps.instance`) over its XYXY `box`
    (image pixels, the continuous frame: pixel j covers [j, j + 1))."""
    height, width = maps.I.shape
    x0, y0, x1, y1 = (float(c) for c in box)
    steps = (np.arange(size, dtype=np.float64) + 0.5) / size
    cols = np.floor(x0 + steps * (x1 - x0)).astype(np.int64)
    rows = np.floor(y0 + steps * (y1 - y0)).astype(np.int64)
    inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    r = np.clip(rows, 0, height - 1)[:, None]
    c = np.clip(cols, 0, width - 1)[None, :]
    mine = inside & (maps.instance[r, c] == instance_id)
    parts = np.where(mine, maps.I[r, c], 0).astype(np.uint8)
    body = parts > 0
    return BoxDenseTruth(parts, np.where(body, maps.U[r, c], 0).astype(np.float32), np.where(body, maps.V[r, c], 0).astype(np.float32))


def flip_dense_truth(truth: BoxDenseTruth, flip_points) -> BoxDenseTruth:
    """The truth of the horizontally flipped image: cells mirrored, and each body cell's part,
    U and V mapped by `flip_points(parts, u, v)` (a FlipSymmetry's)."""
    parts = truth.parts[:, ::-1]
    u, v = truth.u[:, ::-1].copy(), truth.v[:, ::-1].copy()
    new_parts = parts.astype(np.int64).copy()
    body = parts > 0
    if body.any():
        p, a, b = flip_points(parts[body], u[body], v[body])
        new_parts[body], u[body], v[body] = p, a, b
    return BoxDenseTruth(new_parts.astype(np.uint8), u.astype(np.float32), v.astype(np.float32))
