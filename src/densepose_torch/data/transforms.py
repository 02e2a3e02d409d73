"""Training augmentation, as detectron2's DensePose training does it: resize to a randomly
chosen short side, horizontal flip.

Boxes follow the image. DensePose points and dp_masks live in the box's own 256 x 256 frame, so a
resize leaves them alone; a flip mirrors them (x -> 256 - x, the mask's columns reversed) and
swaps left and right: part labels through the symmetry tables, and U, V through the chart's own
mirror map (`FlipSymmetry`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..definitions import COARSE_PART_SYMMETRY, NUM_PARTS, PART_SYMMETRY
from ..errors import DensePoseError
from ..inference import resized_shape
from ..synthetic.parts import flip_iuv

UV_TABLE_SIZE = 256


@dataclass(frozen=True)
class FlipSymmetry:
    """How (I, U, V) of a point changes under a horizontal flip. With tables (DensePose's
    `UV_symmetry_transforms.mat`, 24 x 256 x 256 each) the new U, V are read at
    [int(V * 255), int(U * 255)] of the original part's table, as detectron2 does; without
    tables the synthetic body's exact mirror map is used."""

    u_tables: np.ndarray | None = None
    v_tables: np.ndarray | None = None

    def flip_points(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = np.asarray(parts, dtype=np.int64)
        if self.u_tables is None:
            new_parts, new_u, new_v = flip_iuv(parts, u, v)
            return new_parts.astype(np.int64), new_u, new_v
        table = np.clip(parts - 1, 0, NUM_PARTS - 1)
        row = (np.clip(v, 0.0, 1.0) * (UV_TABLE_SIZE - 1)).astype(np.int64)
        col = (np.clip(u, 0.0, 1.0) * (UV_TABLE_SIZE - 1)).astype(np.int64)
        new_u = self.u_tables[table, row, col].astype(np.float32)
        new_v = self.v_tables[table, row, col].astype(np.float32)
        labelled = parts > 0
        new_parts = np.asarray(PART_SYMMETRY, dtype=np.int64)[parts]
        return new_parts, np.where(labelled, new_u, u).astype(np.float32), np.where(labelled, new_v, v).astype(np.float32)


def load_flip_symmetry(uv_symmetry: str | os.PathLike | None) -> FlipSymmetry:
    """The flip symmetry of a `UV_symmetry_transforms.mat` file, or (None) of our synthetic body."""
    if uv_symmetry is None:
        return FlipSymmetry()
    path = Path(uv_symmetry).expanduser()
    if not path.is_file():
        raise DensePoseError(f"no such UV symmetry file: {path}")
    from scipy.io import loadmat

    try:
        data = loadmat(str(path))
        u_tables = np.stack([np.asarray(data["U_transforms"][0, i], dtype=np.float32) for i in range(NUM_PARTS)])
        v_tables = np.stack([np.asarray(data["V_transforms"][0, i], dtype=np.float32) for i in range(NUM_PARTS)])
    except (KeyError, IndexError, ValueError, TypeError, OSError) as error:
        raise DensePoseError(f"{path} is not a UV_symmetry_transforms.mat file ({type(error).__name__}: {error})") from None
    if u_tables.shape != (NUM_PARTS, UV_TABLE_SIZE, UV_TABLE_SIZE) or v_tables.shape != u_tables.shape:
        raise DensePoseError(f"{path}: expected 24 tables of 256x256, got {u_tables.shape}")
    return FlipSymmetry(u_tables, v_tables)


def resize_image(bgr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow bilinear resize (antialiased when shrinking), as detectron2's ResizeTransform."""
    if bgr.shape[:2] == (height, width):
        return bgr
    return np.asarray(Image.fromarray(bgr).resize((width, height), Image.BILINEAR))


def choose_size(height: int, width: int, short_sides: tuple[int, ...], max_side: int, rng: np.random.Generator) -> tuple[int, int]:
    """ResizeShortestEdge with sampling "choice": a short side drawn uniformly from the list."""
    short = int(short_sides[int(rng.integers(len(short_sides)))])
    return resized_shape(height, width, short, max_side)


def resize_boxes(boxes: np.ndarray, old_size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    scale = np.array([new_size[1] / old_size[1], new_size[0] / old_size[0]] * 2, dtype=np.float64)
    return boxes * scale


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


# COCO keypoint order pairs left and right (nose stays): index i mirrors to KEYPOINT_FLIP[i].
KEYPOINT_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def resize_flip_keypoints(keypoints: np.ndarray, old_size: tuple[int, int], new_size: tuple[int, int], flip: bool) -> np.ndarray:
    """(G, 17, 3) keypoints (continuous pixels, visibility) of an image resized from `old_size`
    to `new_size` (height, width) and maybe mirrored: x -> width - x, left and right swapped."""
    out = keypoints.astype(np.float32).copy()
    out[..., 0] *= new_size[1] / old_size[1]
    out[..., 1] *= new_size[0] / old_size[0]
    if flip:
        out[..., 0] = new_size[1] - out[..., 0]
        out = out[:, list(KEYPOINT_FLIP)]
    out[out[..., 2] <= 0] = 0.0
    return out


def flip_coarse_segmentation(segm: np.ndarray) -> np.ndarray:
    """Mirror a 256 x 256 coarse part map (values 0..14) and swap its left/right part labels."""
    return np.asarray(COARSE_PART_SYMMETRY, dtype=np.uint8)[segm[:, ::-1]]
