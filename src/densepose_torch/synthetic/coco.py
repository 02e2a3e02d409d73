"""DensePose-COCO annotations of a rendered scene (the format of densepose_coco_2014_*.json).

Per visible person: `bbox` (tight XYWH box of the visible pixels), `segmentation` (RLE of the
visible pixels), `area`, `iscrowd` 0, `category_id` 1, COCO-17 `keypoints` and `num_keypoints`,
and, for people large enough, the DensePose fields: about 100 points (`dp_x`, `dp_y` in the box
frame scaled to 256x256, `dp_I`, `dp_U`, `dp_V`) and `dp_masks` (14 coarse-part RLE masks of the
box resampled to 256x256, `[]` for absent parts). `instance_id` links the annotation to the
dense instance map.

Size rules (side = the image's longer side):
* fewer than `min_annotated_pixels` visible pixels: no annotation at all (a sliver nobody could
  label; its pixels stay in the dense maps under their instance id);
* fewer than (side / 16)^2 visible pixels (32x32 at 512 px): annotated without dp_* fields, so the
  DensePose evaluator ignores the person, as it does for un-annotated people in DensePose-COCO.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from ..definitions import FINE_TO_COARSE, NUM_COARSE_PARTS
from .scene import Scene

DP_MASK_SIZE = 256

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
PERSON_CATEGORY = {
    "id": 1, "name": "person", "supercategory": "person",
    "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": [list(edge) for edge in COCO_SKELETON],
}


def min_dp_pixels(height: int, width: int) -> int:
    """Visible pixels a person needs for DensePose points: (longer side / 16) squared."""
    return int(round((max(height, width) / 16.0) ** 2))


def annotate_scene(scene: Scene, rng: np.random.Generator, num_points: int = 100,
                   min_annotated_pixels: int = 16) -> list[dict]:
    """COCO annotation dicts (without `id`/`image_id`) of the people of a scene, in instance
    order. U and V are read from the maps as given (the dataset writer passes the stored,
    quantised maps so that points and dense maps agree exactly)."""
    height, width = scene.instance.shape
    dp_threshold = min_dp_pixels(height, width)
    annotations = []
    for k in range(1, scene.num_persons + 1):
        mask = scene.instance == k
        rows, cols = np.nonzero(mask)
        if rows.size < min_annotated_pixels:
            continue
        x0, y0 = int(cols.min()), int(rows.min())
        w, h = int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        keypoints = scene.keypoints[k - 1]
        flat = []
        for x, y, v in keypoints:
            flat += [round(float(x), 2), round(float(y), 2), int(v)] if v > 0 else [0, 0, 0]
        ann = {
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [float(x0), float(y0), float(w), float(h)],
            "area": float(rows.size),
            "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            "keypoints": flat,
            "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            "instance_id": k,
        }
        if rows.size >= dp_threshold:
            ann.update(_densepose_fields(scene, mask, (x0, y0, w, h), rng, num_points))
        annotations.append(ann)
    return annotations


def _densepose_fields(scene: Scene, mask: np.ndarray, box: tuple[int, int, int, int],
                      rng: np.random.Generator, num_points: int) -> dict:
    x0, y0, w, h = box
    rows, cols = sample_points(scene.I, mask, rng, num_points)
    # Pixel centres in the box frame scaled to 256 (training maps back with x0 + dp_x * w / 256).
    dp_x = (cols + 0.5 - x0) * DP_MASK_SIZE / w
    dp_y = (rows + 0.5 - y0) * DP_MASK_SIZE / h
    crop_parts = np.where(mask, scene.I, 0)[y0:y0 + h, x0:x0 + w]
    # Nearest-neighbour resampling with pixel centres aligned: target cell i reads source row
    # floor((i + 0.5) * h / 256).
    ri = np.minimum(((np.arange(DP_MASK_SIZE) + 0.5) * h / DP_MASK_SIZE).astype(np.int64), h - 1)
    ci = np.minimum(((np.arange(DP_MASK_SIZE) + 0.5) * w / DP_MASK_SIZE).astype(np.int64), w - 1)
    coarse = FINE_TO_COARSE[crop_parts[ri][:, ci]]
    dp_masks = []
    for part in range(1, NUM_COARSE_PARTS + 1):
        m = coarse == part
        if m.any():
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            dp_masks.append({"size": [DP_MASK_SIZE, DP_MASK_SIZE], "counts": rle["counts"].decode("ascii")})
        else:
            dp_masks.append([])
    return {
        "dp_x": [round(float(v), 4) for v in dp_x],
        "dp_y": [round(float(v), 4) for v in dp_y],
        "dp_I": [int(v) for v in scene.I[rows, cols]],
        "dp_U": [round(float(v), 6) for v in scene.U[rows, cols]],
        "dp_V": [round(float(v), 6) for v in scene.V[rows, cols]],
        "dp_masks": dp_masks,
    }


def sample_points(parts: np.ndarray, mask: np.ndarray, rng: np.random.Generator, num_points: int,
                  min_part_pixels: int = 8, min_per_part: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of about `num_points` pixels of `mask`, spread like DensePose-COCO's
    annotated points: each visible part gets points in proportion to its area (at least
    `min_per_part` when it has `min_part_pixels` pixels or more), spread out inside the part
    (random candidates, rejecting those closer than half the mean spacing to an accepted one)."""
    labels = np.where(mask, parts, 0)
    present, counts = np.unique(labels[mask], return_counts=True)
    total = counts.sum()
    out_rows, out_cols = [], []
    for part, count in zip(present, counts):
        quota = int(round(num_points * count / total))
        if count >= min_part_pixels:
            quota = max(quota, min_per_part)
        quota = min(quota, int(count))
        if quota == 0:
            continue
        rows, cols = np.nonzero(labels == part)
        order = rng.permutation(len(rows))
        spacing = 0.5 * np.sqrt(count / quota)
        chosen: list[int] = []
        for idx in order[: 30 * quota]:
            if len(chosen) == quota:
                break
            if chosen:
                d2 = (rows[chosen] - rows[idx]) ** 2 + (cols[chosen] - cols[idx]) ** 2
                if d2.min() < spacing ** 2:
                    continue
            chosen.append(int(idx))
        if len(chosen) < quota:  # crowded part: fill up with the remaining random candidates
            taken = set(chosen)
            chosen += [int(i) for i in order if int(i) not in taken][: quota - len(chosen)]
        out_rows.append(rows[chosen])
        out_cols.append(cols[chosen])
    if not out_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_rows), np.concatenate(out_cols)
