"""Reading DensePose-COCO annotation files for training (densepose_coco_2014_*.json).

Each person annotation becomes a `PersonAnnotation`: its box, crowd flag, DensePose points (if
annotated) and its `dp_masks` (kept encoded; the mapper decodes them in the loader workers).
`training_records` applies detectron2's dataset filter: images without annotations go, and an
image stays only if at least one person carries the five point lists.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..definitions import NUM_COARSE_PARTS, NUM_KEYPOINTS
from ..errors import DensePoseError
from .dense_truth import BoxDenseTruth

DP_POINT_KEYS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")
DP_MASK_SIZE = 256  # dp_masks and dp_x/dp_y live in the box scaled to 256 x 256
PERSON_CATEGORY_ID = 1


@dataclass(frozen=True)
class DensePosePoints:
    """Annotated points of one person: x, y in the box scaled to 256 x 256, part 1..24, U, V."""

    x: np.ndarray  # (P,) float32
    y: np.ndarray  # (P,) float32
    parts: np.ndarray  # (P,) int64
    u: np.ndarray  # (P,) float32
    v: np.ndarray  # (P,) float32


@dataclass(frozen=True)
class PersonAnnotation:
    box: np.ndarray  # (4,) float64 XYXY, image pixels
    crowd: bool
    points: DensePosePoints | None
    masks: Any = None  # the `dp_masks` value (14 RLEs, or one RLE = a binary mask), None if absent
    keypoints: np.ndarray | None = None  # (17, 3) float32 COCO keypoints: x, y (continuous pixels), visibility
    instance_id: int | None = None  # the person's value in a synthetic set's dense instance map
    dense: BoxDenseTruth | None = None  # every body pixel's truth, when the set has it and training asks for it


@dataclass(frozen=True)
class ImageRecord:
    image_id: Any
    path: Path | None  # None for images rendered on the fly
    height: int
    width: int
    persons: tuple[PersonAnnotation, ...]

    @property
    def has_densepose(self) -> bool:
        return any(person.points is not None for person in self.persons)


def _points(ann: dict) -> DensePosePoints | None:
    if not all(key in ann for key in DP_POINT_KEYS):
        return None
    arrays = [np.asarray(ann[key], dtype=np.float64).reshape(-1) for key in DP_POINT_KEYS]
    if len({a.size for a in arrays}) != 1:
        raise DensePoseError(f"annotation {ann.get('id')!r}: dp_x, dp_y, dp_I, dp_U, dp_V have different lengths")
    x, y, parts, u, v = arrays
    return DensePosePoints(x.astype(np.float32), y.astype(np.float32), parts.astype(np.int64), u.astype(np.float32), v.astype(np.float32))


def _keypoints(ann: dict) -> np.ndarray | None:
    """COCO keypoints with detectron2's +0.5: COCO stores pixel indices, training uses continuous
    coordinates (a pixel's centre at index + 0.5)."""
    values = ann.get("keypoints")
    if not values or ann.get("num_keypoints", 1) == 0:
        return None
    keypoints = np.asarray(values, dtype=np.float32).reshape(-1)
    if keypoints.size != 3 * NUM_KEYPOINTS:
        raise DensePoseError(f"annotation {ann.get('id')!r}: keypoints must hold 17 (x, y, v) triples, not {keypoints.size} numbers")
    keypoints = keypoints.reshape(NUM_KEYPOINTS, 3).copy()
    keypoints[keypoints[:, 2] > 0, :2] += 0.5
    return keypoints


def person_from_annotation(ann: dict) -> PersonAnnotation:
    """A PersonAnnotation from one COCO annotation dict (bbox XYWH)."""
    try:
        x, y, w, h = (float(value) for value in ann["bbox"])
    except (KeyError, TypeError, ValueError):
        raise DensePoseError(f"annotation {ann.get('id')!r} has no valid bbox [x, y, w, h]") from None
    masks = ann.get("dp_masks")
    return PersonAnnotation(
        box=np.array([x, y, x + w, y + h], dtype=np.float64),
        crowd=bool(ann.get("iscrowd", 0)),
        points=_points(ann),
        masks=masks if masks else None,
        keypoints=_keypoints(ann),
        instance_id=ann["instance_id"] if isinstance(ann.get("instance_id"), int) else None,
    )


def load_annotation_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise DensePoseError(f"no such annotation file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DensePoseError(f"cannot read annotation file {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DensePoseError(f"{path} is not a COCO annotation file (needs 'images' and 'annotations' lists)")
    return data


def read_records(annotations: str | os.PathLike, image_root: str | os.PathLike) -> list[ImageRecord]:
    """Every image of a DensePose-COCO file with its person annotations (category 1), in file
    order. Image paths are `image_root / file_name`."""
    data = load_annotation_file(annotations)
    root = Path(image_root)
    if not root.is_dir():
        raise DensePoseError(f"no such image folder: {root}")
    by_image: dict[Any, list[PersonAnnotation]] = {}
    for ann in data["annotations"]:
        if ann.get("category_id", PERSON_CATEGORY_ID) == PERSON_CATEGORY_ID:
            by_image.setdefault(ann.get("image_id"), []).append(person_from_annotation(ann))
    records = []
    for index, image in enumerate(data["images"]):
        try:
            image_id, name, height, width = image["id"], image["file_name"], int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise DensePoseError(f"{annotations}: image {index} needs id, file_name, height and width") from None
        records.append(ImageRecord(image_id, root / name, height, width, tuple(by_image.get(image_id, ()))))
    return records


def training_records(records: list[ImageRecord]) -> list[ImageRecord]:
    """detectron2's training filter: drop images without annotations, keep those
    with at least one DensePose-annotated person. Crowd people are dropped later, per image."""
    return [record for record in records if record.persons and record.has_densepose]


def decode_coarse_segmentation(masks: Any) -> np.ndarray:
    """The 256 x 256 uint8 coarse part map of `dp_masks`: value i + 1 where part i's mask is set
    (later parts overwrite earlier ones); a single RLE is a binary (0/1) mask."""
    if isinstance(masks, dict):
        return (_decode_rle(masks) > 0).astype(np.uint8)
    segm = np.zeros((DP_MASK_SIZE, DP_MASK_SIZE), dtype=np.uint8)
    for part, rle in enumerate(masks[:NUM_COARSE_PARTS]):
        if rle:
            segm[_decode_rle(rle) > 0] = part + 1
    return segm


def _decode_rle(rle: dict) -> np.ndarray:
    size = [int(s) for s in rle["size"]]
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"size": size, "counts": counts}, *size)
    else:
        encoded = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    mask = mask_utils.decode(encoded)
    if mask.shape != (DP_MASK_SIZE, DP_MASK_SIZE):
        raise DensePoseError(f"dp_masks entries must be {DP_MASK_SIZE}x{DP_MASK_SIZE}, got {mask.shape[0]}x{mask.shape[1]}")
    return mask
