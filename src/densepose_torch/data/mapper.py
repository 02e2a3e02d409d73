"""One training image as the model consumes it (detectron2's DensePose DatasetMapper):
resized and maybe flipped BGR pixels, the person boxes, and each person's DensePose data.

Crowd people are dropped, boxes are clipped at the image's right/bottom border and empty ones
removed (with their DensePose data), as detectron2 does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..chart_symmetry import FlipSymmetry, mirror_boxes
from ..definitions import NUM_KEYPOINTS
from .dense_truth import BoxDenseTruth, flip_dense_truth
from .densepose_coco import DP_MASK_SIZE, PersonAnnotation, decode_coarse_segmentation
from .transforms import (
    choose_size,
    flip_coarse_segmentation,
    resize_boxes,
    resize_flip_keypoints,
    resize_image,
)

MIN_BOX_SIDE = 1e-5  # detectron2's filter_empty_instances threshold


@dataclass(frozen=True)
class Augmentation:
    short_sides: tuple[int, ...]
    max_side: int
    flip: bool
    symmetry: FlipSymmetry


@dataclass
class InstanceDensePose:
    """DensePose ground truth of one person, in its box's 256 x 256 frame."""

    x: np.ndarray  # (P,) float32
    y: np.ndarray  # (P,) float32
    parts: np.ndarray  # (P,) int64, 1..24
    u: np.ndarray  # (P,) float32
    v: np.ndarray  # (P,) float32
    coarse_segm: np.ndarray | None  # (256, 256) uint8 coarse part map, None without dp_masks
    dense: BoxDenseTruth | None = None  # every body pixel's part, U, V (dense training sets)


@dataclass
class TrainingSample:
    image: np.ndarray  # (3, H, W) uint8 BGR, resized (and maybe flipped)
    boxes: np.ndarray  # (G, 4) float32 XYXY in the resized image
    densepose: list[InstanceDensePose | None]  # one per box
    seed: int = 0  # seeds the training step's random choices for this image (anchor/ROI sampling)
    keypoints: np.ndarray | None = None  # (G, 17, 3) float32 COCO keypoints per box (visibility 0: none)


def map_sample(bgr: np.ndarray, persons: tuple[PersonAnnotation, ...], augmentation: Augmentation, rng: np.random.Generator) -> TrainingSample:
    """Augment one (H, W, 3) uint8 BGR image and its people with random draws from `rng`."""
    height, width = bgr.shape[:2]
    new_h, new_w = choose_size(height, width, augmentation.short_sides, augmentation.max_side, rng)
    flip = augmentation.flip and bool(rng.random() < 0.5)
    image = resize_image(np.ascontiguousarray(bgr), new_h, new_w)
    if flip:
        image = image[:, ::-1]

    kept = [person for person in persons if not person.crowd]
    boxes = np.stack([person.box for person in kept]) if kept else np.zeros((0, 4))
    boxes = resize_boxes(boxes, (height, width), (new_h, new_w))
    if flip:
        boxes = mirror_boxes(boxes, new_w)
    boxes = np.minimum(boxes, np.array([new_w, new_h, new_w, new_h], dtype=np.float64))
    nonempty = ((boxes[:, 2] - boxes[:, 0]) > MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) > MIN_BOX_SIDE)

    densepose = [person_densepose(person, flip, augmentation.symmetry) for person in kept]
    keypoints = np.zeros((len(kept), NUM_KEYPOINTS, 3), dtype=np.float32)
    for k, person in enumerate(kept):
        if person.keypoints is not None:
            keypoints[k] = person.keypoints
    keypoints = resize_flip_keypoints(keypoints, (height, width), (new_h, new_w), flip)
    return TrainingSample(
        image=np.ascontiguousarray(image.transpose(2, 0, 1)),
        boxes=boxes[nonempty].astype(np.float32).reshape(-1, 4),
        densepose=[dp for dp, keep in zip(densepose, nonempty) if keep],
        keypoints=keypoints[nonempty],
    )


def person_densepose(person: PersonAnnotation, flip: bool, symmetry: FlipSymmetry) -> InstanceDensePose | None:
    """The person's DensePose targets (None without points), mirrored when `flip`."""
    points = person.points
    if points is None:
        return None
    x, y, parts, u, v = points.x, points.y, points.parts, points.u, points.v
    segm = decode_coarse_segmentation(person.masks) if person.masks is not None else None
    dense = person.dense
    if flip:
        x = (DP_MASK_SIZE - x).astype(np.float32)
        parts, u, v = symmetry.flip_points(parts, u, v)
        if segm is not None:
            # A single RLE is a plain person mask: mirrored, with no part labels to swap.
            segm = segm[:, ::-1].copy() if isinstance(person.masks, dict) else flip_coarse_segmentation(segm)
        if dense is not None:
            dense = flip_dense_truth(dense, symmetry.flip_points)
    return InstanceDensePose(x.copy(), y.copy(), parts.copy(), u.copy(), v.copy(), segm, dense)
