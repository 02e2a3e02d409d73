"""DensePose body parts and the left-right symmetry of our synthetic body's charts.

Fine parts (I = 1..24; "right"/"left" are the person's own):
 1 torso back, 2 torso front, 3 right hand, 4 left hand, 5 left foot, 6 right foot,
 7/9 right upper leg back/front, 8/10 left upper leg back/front,
 11/13 right lower leg back/front, 12/14 left lower leg back/front,
 15/17 left upper arm front/back, 16/18 right upper arm front/back,
 19/21 left lower arm front(palm side)/back, 20/22 right lower arm front/back,
 23 head right half, 24 head left half.
Coarse parts (the order of DensePose-COCO `dp_masks`): 1 torso, 2 right hand, 3 left hand,
4 left foot, 5 right foot, 6 right upper leg, 7 left upper leg, 8 right lower leg,
9 left lower leg, 10 left upper arm, 11 right upper arm, 12 left lower arm, 13 right lower arm,
14 head.

Chart orientation on the synthetic body (see docs/synthetic.md): torso and limbs have U along the
body (0 at the top / proximal end) and V across it; head halves have U from the back of the head
(0) to the face (1) and V from the neck (0) to the crown (1). Left charts are exact mirror copies
of right charts and the torso charts are mirror-symmetric, so a horizontal flip maps
(I, U, V) to (PART_SYMMETRY[I], U, V) for paired parts and (I, U, 1 - V) for parts 1 and 2.
"""
from __future__ import annotations

import numpy as np

N_PARTS = 24
N_COARSE_PARTS = 14

PART_NAMES = (
    "background", "torso back", "torso front", "right hand", "left hand", "left foot", "right foot",
    "right upper leg back", "left upper leg back", "right upper leg front", "left upper leg front",
    "right lower leg back", "left lower leg back", "right lower leg front", "left lower leg front",
    "left upper arm front", "right upper arm front", "left upper arm back", "right upper arm back",
    "left lower arm front", "right lower arm front", "left lower arm back", "right lower arm back",
    "head right", "head left",
)

COARSE_PART_NAMES = (
    "background", "torso", "right hand", "left hand", "left foot", "right foot", "right upper leg",
    "left upper leg", "right lower leg", "left lower leg", "left upper arm", "right upper arm",
    "left lower arm", "right lower arm", "head",
)

# FINE_TO_COARSE[i] is the coarse part of fine part i (index 0 = background).
FINE_TO_COARSE = np.array(
    [0, 1, 1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 14], dtype=np.uint8
)

# Horizontal flip: fine part i becomes PART_SYMMETRY[i] (detectron2's POINT_LABEL_SYMMETRIES),
# coarse part c becomes COARSE_PART_SYMMETRY[c] (MASK_LABEL_SYMMETRIES).
PART_SYMMETRY = (0, 1, 2, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21, 24, 23)
COARSE_PART_SYMMETRY = (0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14)

# Parts that are their own mirror image; on our body their V coordinate flips.
SELF_SYMMETRIC_PARTS = (1, 2)


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
    u_tables = np.empty((N_PARTS, 256, 256), dtype=np.float32)
    v_tables = np.empty((N_PARTS, 256, 256), dtype=np.float32)
    for part in range(1, N_PARTS + 1):
        u_tables[part - 1] = u_grid
        v_tables[part - 1] = 1.0 - v_grid if part in SELF_SYMMETRIC_PARTS else v_grid
    return u_tables, v_tables
