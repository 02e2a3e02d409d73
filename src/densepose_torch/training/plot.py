"""A PNG of a run's curves, drawn with OpenCV from the metrics log: the loss terms (log scale)
on the left, the held-out figures (GPS/GPSm/IOU AP, part mIoU x 100) on the right."""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from ..io.atomic import atomic_path

# BGR colours, distinguishable and print-friendly.
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140), (194, 119, 227),
           (127, 127, 127), (34, 189, 188), (207, 190, 23))
PANEL_W, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 620, 420, 70, 20, 40, 50
FONT = cv2.FONT_HERSHEY_SIMPLEX
EVAL_SERIES = (("gps", "GPS AP"), ("gpsm", "GPSm AP"), ("iou", "IOU AP"), ("box", "box AP"), ("part_miou", "part mIoU x100"))


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    return [t for t in np.arange(math.ceil(low / step) * step, high + step * 0.001, step)]


def _panel(title: str, series: list[tuple[str, np.ndarray, np.ndarray]], log_y: bool, x_max: float) -> np.ndarray:
    canvas = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    cv2.putText(canvas, title, (MARGIN_L, 25), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    x0, x1, y0, y1 = MARGIN_L, PANEL_W - MARGIN_R, MARGIN_T, PANEL_H - MARGIN_B
    cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 0, 0), 1)
    values = [v for _, _, ys in series for v in ys if np.isfinite(v) and (v > 0 or not log_y)]
    if not values:
        cv2.putText(canvas, "no data yet", (x0 + 20, (y0 + y1) // 2), FONT, 0.6, (120, 120, 120), 1, cv2.LINE_AA)
        return canvas
    transform = (lambda v: np.log10(np.maximum(v, 1e-12))) if log_y else (lambda v: np.asarray(v, np.float64))
    low, high = float(np.min(transform(values))), float(np.max(transform(values)))
    if log_y:
        low, high = math.floor(low), math.ceil(high) if math.ceil(high) > math.floor(low) else math.floor(low) + 1
        y_ticks = list(range(int(low), int(high) + 1))
    else:
        low, high = min(low, 0.0), max(high * 1.05, 1.0)
        y_ticks = _nice_ticks(low, high)
        low, high = min(low, y_ticks[0]), max(high, y_ticks[-1])
    x_max = max(x_max, 1.0)

    def to_px(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        px = x0 + (np.asarray(xs, np.float64) / x_max) * (x1 - x0)
        py = y1 - (transform(ys) - low) / (high - low) * (y1 - y0)
        return np.stack([px, py], axis=1).round().astype(np.int32)

    for tick in y_ticks:
        py = round(float(y1 - (tick - low) / (high - low) * (y1 - y0)))
        cv2.line(canvas, (x0, py), (x1, py), (225, 225, 225), 1)
        label = f"1e{int(tick)}" if log_y else f"{tick:g}"
        cv2.putText(canvas, label, (5, py + 4), FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for tick in _nice_ticks(0, x_max):
        px = round(float(x0 + tick / x_max * (x1 - x0)))
        cv2.line(canvas, (px, y1), (px, y1 + 4), (0, 0, 0), 1)
        cv2.putText(canvas, f"{tick:g}", (px - 12, y1 + 18), FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(canvas, "iteration", ((x0 + x1) // 2 - 30, PANEL_H - 10), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (name, xs, ys) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        keep = np.isfinite(ys) & ((ys > 0) if log_y else True)
        points = to_px(xs[keep], ys[keep])
        if len(points) > 1:
            cv2.polylines(canvas, [points], False, color, 2 if name in ("total", "GPS AP") else 1, cv2.LINE_AA)
        for point in points if len(points) < 40 else []:
            cv2.circle(canvas, tuple(int(c) for c in point), 3, color, -1, cv2.LINE_AA)
        ly = y0 + 16 + 16 * k
        cv2.line(canvas, (x1 - 150, ly - 4), (x1 - 130, ly - 4), color, 2)
        cv2.putText(canvas, name, (x1 - 125, ly), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def plot_metrics(entries: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Draw the training (lines with "losses") and evaluation (lines with "eval") entries."""
    train = [e for e in entries if "losses" in e]
    evals = [e for e in entries if "eval" in e]
    x_max = max([e["iteration"] for e in entries] or [1])
    iterations = np.array([e["iteration"] for e in train], np.float64)
    loss_names = ["total"] + sorted({k for e in train for k in e["losses"]} - {"total"})
    loss_series = [
        (name.replace("loss_", ""), iterations, np.array([e["losses"].get(name, np.nan) for e in train], np.float64))
        for name in loss_names
    ]
    eval_x = np.array([e["iteration"] for e in evals], np.float64)
    eval_series = []
    for key, label in EVAL_SERIES:
        ys = np.array([np.nan if e["eval"].get(key) is None else e["eval"][key] * (100 if key == "part_miou" else 1) for e in evals], np.float64)
        if np.isfinite(ys).any():
            eval_series.append((label, eval_x, ys))
    left = _panel(f"{title} training losses".strip(), loss_series, True, x_max)
    right = _panel("held-out evaluation", eval_series, False, x_max)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.concatenate([left, right], axis=1), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise OSError(f"could not write {path}")
    return path
