"""Training augmentation, as detectron2's DensePose training does it: resize to a randomly
chosen short side, horizontal flip.

Boxes follow the image. DensePose points and dp_masks live in the box's own 256 x 256 frame, so a
resize leaves them alone; a flip mirrors them (x -> 256 - x, the mask's columns reversed) and
swaps left and right: part labels through the symmetry tables, and U, V through the chart's own
mirror map (`chart_symmetry.FlipSymmetry`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..definitions import COARSE_PART_SYMMETRY
from ..inference import resized_shape


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
