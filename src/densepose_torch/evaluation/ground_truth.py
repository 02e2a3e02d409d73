"""DensePose-COCO ground truth: loading and checking an annotation file, and building annotations.

A person annotation carries `bbox` [x, y, w, h], `area`, `iscrowd` and, when it was annotated
densely, the points `dp_x`, `dp_y` (position in the box scaled to 256 x 256), `dp_I` (part
1..24), `dp_U`, `dp_V`, and optionally `dp_masks` (14 coarse-part RLEs of 256 x 256).
Persons without `dp_x` are ignored by the DensePose metrics.
"""
from __future__ import annotations

import copy
import numbers
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DensePoseError
from ..io.json_files import read_json

DP_POINT_KEYS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")


@dataclass(frozen=True)
class GroundTruth:
    """A checked COCO dataset: `dataset` is the COCO dict itself (what pycocotools reads), with
    `iscrowd`, `area` and `id` filled in where an annotation lacked them."""

    dataset: dict
    image_sizes: dict[Any, tuple[int, int]]  # image id -> (height, width)
    file_names: dict[str, Any]  # image file base name -> image id
    category_ids: list  # sorted
    annotations: dict[tuple[Any, Any], list[dict]]  # (image id, category id) -> annotations, file order

    @property
    def image_ids(self) -> list:
        return sorted(self.image_sizes)

    def only_images(self, image_ids: Iterable) -> GroundTruth:
        """The same ground truth cut down to the images `image_ids` names and their annotations
        (an evaluation on part of a set must not count the people of the other images as missed)."""
        keep = set(image_ids)
        if keep >= set(self.image_sizes):
            return self
        return load_ground_truth({
            **self.dataset,
            "images": [image for image in self.dataset["images"] if image["id"] in keep],
            "annotations": [ann for ann in self.dataset["annotations"] if ann["image_id"] in keep],
        })


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_annotation(ann: Any, index: int, source: str, image_sizes: dict) -> dict:
    if not isinstance(ann, dict):
        raise DensePoseError(f"{source}: annotation {index} is not a JSON object")
    for key in ("image_id", "category_id", "bbox"):
        if key not in ann:
            raise DensePoseError(f"{source}: annotation {index} lacks {key}")
    if ann["image_id"] not in image_sizes:
        raise DensePoseError(f"{source}: annotation {index} refers to image {ann['image_id']!r}, which is not in 'images'")
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise DensePoseError(f"{source}: annotation {index} has a bbox that is not 4 numbers [x, y, w, h]: {bbox!r}")
    ann = dict(ann)
    ann.setdefault("iscrowd", 0)
    ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
    ann.setdefault("id", index + 1)
    if "dp_x" in ann:
        lengths = {key: len(ann.get(key, ())) if isinstance(ann.get(key), list) else None for key in DP_POINT_KEYS}
        if None in lengths.values() or len(set(lengths.values())) != 1:
            raise DensePoseError(f"{source}: annotation {index} needs dp_x, dp_y, dp_I, dp_U, dp_V as lists of equal length")
    return ann


def load_ground_truth(source: str | os.PathLike | dict | GroundTruth) -> GroundTruth:
    """Read and check a DensePose-COCO annotation file (or an already loaded dict)."""
    if isinstance(source, GroundTruth):
        return source
    if isinstance(source, dict):
        name, data = "ground truth", copy.deepcopy(source)
    else:
        name, data = os.fspath(source), read_json(source, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DensePoseError(f"{name} is not a COCO annotation file (needs 'images' and 'annotations' lists)")

    image_sizes, file_names = {}, {}
    for index, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and "id" in image and _is_number(image.get("height")) and _is_number(image.get("width"))):
            raise DensePoseError(f"{name}: image {index} needs id, height and width")
        image_sizes[image["id"]] = (int(image["height"]), int(image["width"]))
        if isinstance(image.get("file_name"), str):
            file_names[Path(image["file_name"]).name] = image["id"]

    if any(isinstance(image, dict) and image.get("ignore_regions_x") for image in data["images"]):
        warnings.warn(f"{name}: image ignore regions (ignore_regions_x, PoseTrack) are not supported and are not applied", stacklevel=2)
    data["annotations"] = [_check_annotation(ann, i, name, image_sizes) for i, ann in enumerate(data["annotations"])]
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        ids = sorted({ann["category_id"] for ann in data["annotations"]} or {1})
        data["categories"] = [{"id": category, "name": "person" if category == 1 else str(category)} for category in ids]
    category_ids = sorted(category["id"] for category in data["categories"])

    annotations: dict[tuple[Any, Any], list[dict]] = {}
    for ann in data["annotations"]:
        annotations.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    return GroundTruth(data, image_sizes, file_names, category_ids, annotations)


def points_to_annotation(
    bbox_xywh: tuple[float, float, float, float],
    x: np.ndarray,
    y: np.ndarray,
    parts: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    image_id: Any = 1,
    annotation_id: int = 1,
) -> dict:
    """A DensePose-COCO person annotation from points given in image pixels: dp_x, dp_y are the
    positions in the box scaled so that the box is 256 x 256 (the dataset's convention)."""
    bx, by, bw, bh = (float(value) for value in bbox_xywh)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [bx, by, bw, bh],
        "area": bw * bh,
        "dp_x": ((x - bx) * 256.0 / bw).tolist(),
        "dp_y": ((y - by) * 256.0 / bh).tolist(),
        "dp_I": np.asarray(parts, np.float64).tolist(),
        "dp_U": np.asarray(u, np.float64).tolist(),
        "dp_V": np.asarray(v, np.float64).tolist(),
    }
