"""The left-right symmetry of our synthetic body's charts (the part table itself is in
`densepose_torch.definitions`).

Chart orientation on the synthetic body (see docs/synthetic.md): torso and limbs have U along the
body (0 at the top / proximal end) and V across it; head halves have U from the back of the head
(0) to the face (1) and V from the neck (0) to the crown (1). Left charts are exact mirror copies
of right charts and the torso charts are mirror-symmetric, so a horizontal flip maps
(I, U, V) to (PART_SYMMETRY[I], U, V) for paired parts and (I, U, 1 - V) for parts 1 and 2.
"""
from __future__ import annotations

import numpy as np

from ..definitions import NUM_PARTS, PART_SYMMETRY, PARTS, SELF_SYMMETRIC_PARTS


def flip_iuv(parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact (I, U, V) of the mirrored surface point on the synthetic body (no quantisation)."""
    parts = np.asarray(parts)
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    self_sym = np.isin(parts, SELF_SYMMETRIC_PARTS)
    return np.asarray(PART_SYMMETRY, dtype=parts.dtype)[parts], u.copy(), np.where(self_sym, 1.0 - v, v).astype(np.float32)


def uv_symmetry_tables() -> tuple[np.ndarray, np.ndarray]:
    """(U_transforms, V_transforms), each (24, 256, 256) float32, in the layout of DensePose's
    UV_symmetry_transforms.mat: for a point of part I (1-based) at (U, V), the mirrored point has
    U' = U_transforms[I - 1][int(V * 255), int(U * 255)] and V' likewise.

    Each table cell holds the value at the centre of its bin, so applying a flip twice returns a
    coordinate within 1/255 of the original one (one bin; the exact answer is `flip_iuv`)."""
    centre = np.minimum((np.arange(256, dtype=np.float32) + 0.5) / 255.0, 1.0)
    u_grid = np.broadcast_to(centre[None, :], (256, 256))  # [row = V bin, col = U bin]
    v_grid = np.broadcast_to(centre[:, None], (256, 256))
    u_tables = np.empty((NUM_PARTS, 256, 256), dtype=np.float32)
    v_tables = np.empty((NUM_PARTS, 256, 256), dtype=np.float32)
    for part in PARTS:
        u_tables[part - 1] = u_grid
        v_tables[part - 1] = 1.0 - v_grid if part in SELF_SYMMETRIC_PARTS else v_grid
    return u_tables, v_tables
