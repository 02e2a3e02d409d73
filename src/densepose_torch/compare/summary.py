"""The figures of a comparison: per-model speed, memory, detections, ground-truth metrics and
agreement, as table rows whose rounded values every output (HTML, CSV, JSON) shows alike."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .runner import ModelRun


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    decimals: int | None  # None: a text column
    help: str


def columns(with_ground_truth: bool) -> list[Column]:
    listed = [
        Column("model", "model", None, "display name"),
        Column("source", "source", None, "zoo name, checkpoint path, or the embedded default model"),
        Column("status", "status", None, "ran, or skipped with the reason"),
        Column("load_s", "load s", 2, "seconds to read the weights and build the model (latest run)"),
        Column("latency_median_ms", "median ms/image", 1,
               "median per-image time of the model call (a batch's time divided by its images); reading the file excluded"),
        Column("latency_p95_ms", "p95 ms/image", 1, "95th percentile of the per-image time"),
        Column("images_per_s", "images/s", 3, "images divided by the summed per-image times"),
        Column("peak_memory_mb", "peak MB", 0,
               "CPU: the process's resident-memory high-water mark while the model loaded and ran; CUDA: peak allocated"),
        Column("detections_per_image", "detections/image", 2, "mean detections per image at --min-score"),
    ]
    if with_ground_truth:
        listed += [
            Column("gps_ap", "GPS AP", 2, "DensePose GPS AP (0.50:0.95) on --gt, every detection of the model"),
            Column("gpsm_ap", "GPSm AP", 2, "DensePose GPSm AP on --gt"),
            Column("iou_ap", "IOU AP", 2, "DensePose mask IOU AP on --gt"),
            Column("box_ap", "box AP", 2, "COCO box AP on --gt"),
        ]
    listed += [
        Column("mean_agreement", "mean agreement", 3, "mean part-map mIoU with the other models that ran"),
        Column("zoo_gpsm_ap", "zoo GPSm AP", 1, "GPSm AP published for the zoo model (COCO minival; Atop10P: chimps)"),
    ]
    return listed


def latency_stats(seconds: list[float]) -> dict[str, float | None]:
    """Median and 95th percentile (linear interpolation) per image in ms, and throughput."""
    if not seconds:
        return {"latency_median_ms": None, "latency_p95_ms": None, "images_per_s": None}
    values = np.asarray(seconds, np.float64)
    total = float(values.sum())
    return {
        "latency_median_ms": float(np.median(values)) * 1000,
        "latency_p95_ms": float(np.percentile(values, 95)) * 1000,
        "images_per_s": len(values) / total if total > 0 else None,
    }


def rounded(value: Any, decimals: int | None) -> Any:
    if decimals is None or value is None:
        return value
    return round(float(value), decimals)


def cell_text(value: Any, column: Column) -> str:
    """How CSV and HTML write a value ("" for none)."""
    if value is None:
        return ""
    if column.decimals is None:
        return str(value)
    return f"{value:.{column.decimals}f}"


def _shown_path(path: str) -> str:
    """A checkpoint path relative to the working folder when it lies inside it, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def model_row(
    run: ModelRun, seconds: list[float], detections: list[int], metrics: dict | None, agreement: float | None,
    table: list[Column],
) -> dict[str, Any]:
    """One table row, every number rounded to its column's decimals."""
    zoo = run.spec.zoo
    values: dict[str, Any] = {
        "model": run.spec.name,
        "source": _shown_path(run.spec.source) if run.spec.kind == "path" else run.spec.kind,
        "status": "ran" if run.ran else f"skipped: {run.skip_reason}",
        "load_s": run.load_seconds,
        "peak_memory_mb": run.peak_memory_mb,
        "detections_per_image": float(np.mean(detections)) if detections else None,
        "mean_agreement": agreement,
        "zoo_gpsm_ap": zoo.metrics.gpsm_ap if zoo is not None else None,
        **latency_stats(seconds),
    }
    if metrics is not None:
        values.update(gps_ap=metrics.get("gps", {}).get("AP"), gpsm_ap=metrics.get("gpsm", {}).get("AP"),
                      iou_ap=metrics["iou"]["AP"], box_ap=metrics["bbox"]["AP"])
    return {column.key: rounded(values.get(column.key), column.decimals) for column in table}
