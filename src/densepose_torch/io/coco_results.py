"""COCO DensePose results files (the 2018 challenge format), written and read back.

One JSON list, one record per detection:
`image_id`, `category_id` (1 = person), `bbox` [x, y, w, h] floats in original-image pixels,
`score`, `segmentation` (COCO compressed RLE of the chart's body pixels pasted into the whole
image, `counts` as a str), `uv_shape` [3, h, w] and `uv_data`: base64 of a PNG holding the
quantised chart as an RGB image of h rows and w columns, R = I (0..24), G = U*255, B = V*255
(PIL channel order, as the official evaluator decodes it), and optionally `file_name`. Cascade
models with a keypoint branch add `keypoints` in COCO's keypoint results format: 51 floats,
x, y, score for each of the 17 keypoints.

The chart is (h, w) = (max(int(bbox h), 1), max(int(bbox w), 1)) pixels anchored at
(int(x), int(y)), as detectron2 converts a box.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from ..errors import DensePoseError
from ..results import ChartResult, DensePoseResult, image_window
from .atomic import atomic_write
from .json_files import read_json

PERSON_CATEGORY_ID = 1
REQUIRED_KEYS = ("image_id", "category_id", "bbox", "score", "uv_shape", "uv_data")


def quantize_chart(chart: ChartResult) -> np.ndarray:
    """(3, h, w) uint8 [I, U*255, V*255] as detectron2 quantises a chart for evaluation:
    (uv * 255).clamp(0, 255) cast to uint8, which truncates."""
    uv = np.clip(chart.uv.astype(np.float32) * np.float32(255), 0, 255).astype(np.uint8)
    return np.concatenate([chart.labels.astype(np.uint8)[None], uv], axis=0)


def encode_chart(labels_uv: np.ndarray) -> str:
    """base64 PNG of a (3, h, w) uint8 chart, the `uv_data` field."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(labels_uv.transpose(1, 2, 0))).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_chart(record: dict) -> np.ndarray:
    """The (3, h, w) uint8 chart [I, U*255, V*255] of one results record."""
    try:
        png = base64.b64decode(record["uv_data"])
        with Image.open(io.BytesIO(png)) as image:
            mode = image.mode
            pixels = np.asarray(image)
    except (KeyError, TypeError, ValueError, binascii.Error, UnidentifiedImageError, OSError) as error:
        raise DensePoseError(f"record of image {record.get('image_id')!r} has no readable uv_data PNG ({error})") from None
    if mode != "RGB":
        raise DensePoseError(f"record of image {record.get('image_id')!r}: uv_data is a {mode} PNG, expected RGB [I, U, V]")
    labels_uv = pixels.transpose(2, 0, 1)
    shape = record.get("uv_shape")
    if list(labels_uv.shape) != list(shape or []):
        raise DensePoseError(
            f"record of image {record.get('image_id')!r}: uv_shape {shape} does not match its PNG ({list(labels_uv.shape)})"
        )
    return np.ascontiguousarray(labels_uv)


def chart_mask_rle(labels: np.ndarray, x: int, y: int, image_size: tuple[int, int]) -> dict:
    """COCO compressed RLE (counts as str) of `labels > 0` pasted at (x, y) into an image of
    `image_size` (height, width), clipped to the image."""
    height, width = image_size
    mask = np.zeros((height, width), np.uint8)
    window = image_window(x, y, labels.shape[1], labels.shape[0], image_size)
    if window is not None:
        mask[window.image] = labels[window.box] > 0
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


def result_to_records(result: DensePoseResult, image_id: Any, file_name: str | None = None, inline_charts: bool = False) -> list[dict]:
    """One results record per detection of `result`, in the result's (score) order. With
    `inline_charts` each record holds its quantised chart as the array `labels_uv` instead of
    `uv_shape`, `uv_data` and `segmentation`: what the evaluator reads, without the PNG and RLE
    round trip a held-out evaluation during training does not need."""
    records = []
    for index, (box, score, chart) in enumerate(zip(result.boxes, result.scores, result.charts)):
        x0, y0, x1, y1 = (float(value) for value in box)
        labels_uv = quantize_chart(chart)
        record = {"image_id": image_id, "category_id": PERSON_CATEGORY_ID, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
        if inline_charts:
            record["labels_uv"] = labels_uv
        else:
            record["segmentation"] = chart_mask_rle(chart.labels, chart.x, chart.y, result.image_size)
            record["uv_shape"] = [3, chart.height, chart.width]
            record["uv_data"] = encode_chart(labels_uv)
        if result.keypoints is not None:
            record["keypoints"] = [float(value) for value in result.keypoints[index].reshape(-1)]
        if result.track_ids is not None:
            record["track_id"] = int(result.track_ids[index])
        if file_name is not None:
            record["file_name"] = str(file_name)
        records.append(record)
    return records


def _json_record(record: dict) -> dict:
    """The JSON-writable form of a record: the decoded chart, if any, goes back into uv_data."""
    out = {key: value for key, value in record.items() if key != "labels_uv"}
    if "uv_data" not in out and "labels_uv" in record:
        labels_uv = np.asarray(record["labels_uv"], np.uint8)
        out["uv_shape"] = [int(n) for n in labels_uv.shape]
        out["uv_data"] = encode_chart(labels_uv)
    return out


def write_results(path: str | os.PathLike, records: list[dict]) -> None:
    """Write records as a COCO DensePose results JSON file (atomically)."""
    payload = [_json_record(record) for record in records]
    with atomic_write(path, "w") as handle:
        json.dump(payload, handle)


def _check_record(record: Any, index: int, source: str) -> None:
    if not isinstance(record, dict):
        raise DensePoseError(f"{source}: record {index} is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise DensePoseError(f"{source}: record {index} lacks {', '.join(missing)}")
    bbox = record["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, numbers.Real) for v in bbox)):
        raise DensePoseError(f"{source}: record {index} has a bbox that is not 4 numbers [x, y, w, h]: {bbox!r}")
    if not isinstance(record["score"], numbers.Real):
        raise DensePoseError(f"{source}: record {index} has a non-numeric score {record['score']!r}")
    shape = record["uv_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and shape[0] == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise DensePoseError(f"{source}: record {index} has uv_shape {shape!r}, expected [3, h, w]")


def load_results(path: str | os.PathLike, decode: bool = True) -> list[dict]:
    """Records of a results JSON file, each with its decoded chart added as `labels_uv`
    ((3, h, w) uint8 [I, U*255, V*255]) unless `decode` is False (large files: decode what you
    use with `decode_chart`). A folder stands for all the .json files under it (e.g. the
    per-image files of `densepose predict --outputs json`), in sorted path order."""
    if Path(path).is_dir():
        files = sorted(Path(path).rglob("*.json"))
        if not files:
            raise DensePoseError(f"no .json results files in {path}")
        return [record for file in files for record in load_results(file, decode)]
    source = os.fspath(path)
    records = read_json(source, "results file")
    if not isinstance(records, list):
        raise DensePoseError(f"results file {source} must hold a JSON list of detections, found a {type(records).__name__}")
    for index, record in enumerate(records):
        _check_record(record, index, source)
        if not decode:
            continue
        try:
            record["labels_uv"] = decode_chart(record)
        except DensePoseError as error:
            raise DensePoseError(f"{source}: record {index}: {error}") from None
    return records
