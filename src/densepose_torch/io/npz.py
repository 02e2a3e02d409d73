"""DensePose results as a plain NumPy `.npz` archive, readable with numpy alone
(`np.load(path)`; nothing pickled, so `allow_pickle=False` works).

Arrays in the file:

| key | shape, dtype | meaning |
|---|---|---|
| `I` | (H, W) uint8 | body part 1..24 of each pixel of the image, 0 = background |
| `U`, `V` | (H, W) float32 | chart coordinates of that part, 0 at background |
| `instance` | (H, W) uint16 | which detection owns the pixel: k = row k-1 of `boxes` (in a video: k = its track id), 0 = background |
| `track_ids` | (N,) int64 | only for video frames: each detection's track id, the same person's in every frame |
| `boxes` | (N, 4) float32 | detections, XYXY in image pixels, descending score |
| `scores` | (N,) float32 | detection scores |
| `sigma_2`, `kappa_u`, `kappa_v`, `fine_segm_confidence`, `coarse_segm_confidence` | (H, W) float32 | models that predict them; 0 at background |
| `chart_xy` | (N, 2) int32 | top-left pixel (x, y) where each detection's chart is anchored |
| `chart{k}_labels`, `chart{k}_uv`, `chart{k}_<confidence>` | (h, w) uint8, (2, h, w) float32, (h, w) float32 | detection k's own chart (k from 0), lossless |
| `keypoints` | (N, 17, 3) float32 | only for cascade models with a keypoint branch: COCO's 17 keypoints per detection, image x, y, score |
| `chart{k}_mask` | (h, w) bool | only for cascade models with a mask branch: detection k's person mask over its chart |
| `chart_body` | () str | whose charts U, V are on: "smpl" (DensePose's, zoo models) or "synthetic" (the embedded default model's) |
| `vertex` | (H, W) int32 | SMPL charts with DensePose's SMPL files ([surface] extra, --smpl-charts): each pixel's nearest SMPL vertex, -1 off the body |
| `format` | () str | "densepose-torch-npz/1" |

Overlap rule of the full-image maps: where detections overlap, the higher-scoring one owns the
pixel (`DensePoseResult.to_dense()`); the per-detection charts keep everything.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..definitions import CONFIDENCE_FIELDS
from ..errors import DensePoseError
from ..results import ChartResult, DensePoseResult
from ..surface.lookup import ChartLocator
from ..surface.maps import require_smpl_charts_of, surface_maps
from .atomic import atomic_write

FORMAT = "densepose-torch-npz/1"


def result_arrays(result: DensePoseResult, locator: ChartLocator | None = None) -> dict[str, np.ndarray]:
    """The arrays `write_npz` stores, by key; with a `surface.ChartLocator`, `vertex` too."""
    maps = result.to_dense()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "chart_body": np.array(result.chart_body),
        "I": maps.I,
        "U": maps.U.astype(np.float32),
        "V": maps.V.astype(np.float32),
        "instance": maps.instance,
        "boxes": result.boxes.astype(np.float32).reshape(-1, 4),
        "scores": result.scores.astype(np.float32).reshape(-1),
        "chart_xy": np.array([[chart.x, chart.y] for chart in result.charts], np.int32).reshape(-1, 2),
    }
    if result.track_ids is not None:
        arrays["track_ids"] = result.instance_ids()
    if locator is not None:
        require_smpl_charts_of(result.chart_body, "SMPL vertex maps")
        arrays["vertex"] = surface_maps(maps, locator).vertex
    height, width = result.image_size
    owner = maps.instance.astype(np.int64)
    ids = result.instance_ids()
    for name in CONFIDENCE_FIELDS:
        if not result.charts or any(getattr(chart, name) is None for chart in result.charts):
            continue
        full = np.zeros((height, width), np.float32)
        for index, chart in enumerate(result.charts):
            _paste_owned(full, getattr(chart, name), chart, owner == ids[index])
        arrays[name] = full
    for index, chart in enumerate(result.charts):
        arrays[f"chart{index}_labels"] = chart.labels.astype(np.uint8)
        arrays[f"chart{index}_uv"] = chart.uv.astype(np.float32)
        for name, values in chart.confidences().items():
            arrays[f"chart{index}_{name}"] = values.astype(np.float32)
        if chart.mask is not None:
            arrays[f"chart{index}_mask"] = chart.mask.astype(bool)
    if result.keypoints is not None:
        arrays["keypoints"] = result.keypoints.astype(np.float32).reshape(-1, *result.keypoints.shape[1:])
    return arrays


def _paste_owned(full: np.ndarray, values: np.ndarray, chart: ChartResult, owned: np.ndarray) -> None:
    window = chart.window(full.shape)
    if window is not None:
        inside = owned[window.image]
        full[window.image][inside] = values[window.box][inside]


def write_npz(path: str | os.PathLike, result: DensePoseResult, locator: ChartLocator | None = None) -> Path:
    """Write `result` as a compressed `.npz` (atomically; with a `surface.ChartLocator`, its SMPL
    `vertex` map too); returns the path."""
    path = Path(path)
    arrays = result_arrays(result, locator)
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def npz_bytes(result: DensePoseResult, locator: ChartLocator | None = None) -> bytes:
    """The bytes `write_npz` would write, for replies and datasets that hold files in memory."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **result_arrays(result, locator))
    return buffer.getvalue()


def read_npz(path: str | os.PathLike) -> DensePoseResult:
    """The DensePoseResult stored in a file written by `write_npz` (from its per-detection charts,
    so it is exactly the result that was written)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise DensePoseError(f"no such file: {path}") from None
    except (OSError, ValueError) as error:
        raise DensePoseError(f"not a DensePose .npz file: {path} ({error})") from None
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise DensePoseError(f"not a densepose-torch .npz file (no format {FORMAT!r}): {path}")
    try:
        return _result_from_arrays(arrays)
    except KeyError as missing:
        raise DensePoseError(f"incomplete DensePose .npz file, {missing} is missing: {path}") from None


def _result_from_arrays(arrays: dict[str, np.ndarray]) -> DensePoseResult:
    charts = []
    for index, (x, y) in enumerate(arrays["chart_xy"]):
        optional = {name: arrays[f"chart{index}_{name}"] for name in (*CONFIDENCE_FIELDS, "mask") if f"chart{index}_{name}" in arrays}
        charts.append(ChartResult(x=int(x), y=int(y), labels=arrays[f"chart{index}_labels"], uv=arrays[f"chart{index}_uv"], **optional))
    height, width = arrays["I"].shape
    return DensePoseResult(
        image_size=(int(height), int(width)), boxes=arrays["boxes"], scores=arrays["scores"], charts=charts,
        keypoints=arrays.get("keypoints"), track_ids=arrays.get("track_ids"),
        chart_body=str(arrays["chart_body"]) if "chart_body" in arrays else "smpl",
    )
