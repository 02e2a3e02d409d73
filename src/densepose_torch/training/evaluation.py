"""Evaluating a model on a held-out DensePose-COCO set during (or after) training.

Figures: the official GPS, GPSm and IOU AP (`evaluation.evaluate`, on the chosen body surface)
and box AP, plus the fine-part mIoU: per part 1..24, intersection over union accumulated over
the whole set, averaged over the parts that occur. The predicted part map of an image pastes the
detections scoring above `min_score` (the higher score wins an overlap). With dense ground
truth (synthetic sets written by `densepose synth`: `dense/NNNNNN.npz`) every pixel counts;
otherwise only the annotated points do (their pixel's predicted part against the annotated part),
which measures the same thing on the sparse labels of DensePose-COCO.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import DensePoseError
from ..inference import Predictor
from ..io.coco_results import quantize_chart
from ..modeling import DensePoseRCNN
from ..results import DensePoseResult
from ..synthetic.dataset import dense_truth_path

NUM_LABELS = 25  # background + 24 parts


def part_confusion(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(25, 25) counts [true part, predicted part] over paired label arrays."""
    pairs = truth.astype(np.int64).reshape(-1) * NUM_LABELS + predicted.astype(np.int64).reshape(-1)
    return np.bincount(pairs, minlength=NUM_LABELS * NUM_LABELS).reshape(NUM_LABELS, NUM_LABELS)


def part_miou(confusion: np.ndarray) -> float | None:
    """Mean IoU over the parts 1..24 that occur in the truth or the prediction (None if none)."""
    intersection = np.diag(confusion)[1:].astype(np.float64)
    union = confusion.sum(axis=0)[1:] + confusion.sum(axis=1)[1:] - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present])) if present.any() else None


def left_right_confusion(confusion: np.ndarray) -> list[tuple[int, int, float]]:
    """For every pair of mirror parts (a, b), a < b (left/right; the torso's and head's pairs
    are back/front and right/left as DensePose numbers them): the share of the pair's true
    body pixels, labelled as one of the two, that got the other one. NaN if neither occurs."""
    from ..synthetic.parts import PART_SYMMETRY

    pairs = []
    for a, b in sorted({tuple(sorted((p, q))) for p, q in enumerate(PART_SYMMETRY) if p > 0 and p != q} | {(1, 2)}):
        swapped = confusion[a, b] + confusion[b, a]
        total = swapped + confusion[a, a] + confusion[b, b]
        pairs.append((a, b, float(swapped / total) if total else float("nan")))
    return pairs


def point_labels(annotation: dict, part_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(annotated parts, predicted parts at those points' pixels) of one person annotation."""
    x0, y0, w, h = (float(v) for v in annotation["bbox"])
    height, width = part_map.shape
    cols = np.clip(np.floor(x0 + np.asarray(annotation["dp_x"], np.float64) * w / 256.0), 0, width - 1).astype(np.int64)
    rows = np.clip(np.floor(y0 + np.asarray(annotation["dp_y"], np.float64) * h / 256.0), 0, height - 1).astype(np.int64)
    return np.asarray(annotation["dp_I"], np.int64), part_map[rows, cols]


def _dense_parts(path: Path | None) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    with np.load(path) as data:
        return data["I"]


def evaluate_model(
    model: DensePoseRCNN,
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    surface: Any,
    limit: int | None = None,
    min_score: float = 0.5,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every image of the held-out set (the first `limit`), then GPS/GPSm/IOU AP, box AP
    and the fine-part mIoU. `surface` is a BodySurface (None: no GPS/GPSm)."""
    return evaluate_predictions(Predictor(model, device=model.device), annotations, images, surface, limit, min_score, progress)


def evaluate_predictions(
    predict: Callable[[Path], DensePoseResult],
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    surface: Any,
    limit: int | None = None,
    min_score: float = 0.5,
    progress: bool = True,
) -> dict[str, Any]:
    """evaluate_model for any predictor: `predict(image path)` gives the image's result. Returns
    the summary figures, the evaluator's metrics and the part confusion behind the mIoU (25 lists
    of 25 pixel counts, [true part][predicted part], JSON-ready as the rest)."""
    from ..evaluation import evaluate, load_ground_truth

    gt = load_ground_truth(Path(annotations))
    dataset = gt.dataset
    chosen = dataset["images"][:limit] if limit else dataset["images"]
    chosen_ids = {image["id"] for image in chosen}
    subset = dict(dataset, images=list(chosen), annotations=[a for a in dataset["annotations"] if a["image_id"] in chosen_ids])
    gt = load_ground_truth(subset)

    records: list[dict] = []
    confusion = np.zeros((NUM_LABELS, NUM_LABELS), dtype=np.int64)
    dense_images = 0
    folder = Path(images)
    for image in tqdm(chosen, desc="evaluating", unit="image", disable=not progress, leave=False):
        path = folder / image["file_name"]
        if not path.is_file():
            raise DensePoseError(f"held-out image {path} is missing")
        result = predict(path)
        records += _records(result, image["id"])
        part_map = result.above(min_score).to_dense().I if len(result) else np.zeros(result.image_size, np.uint8)
        truth = _dense_parts(dense_truth_path(annotations, dataset, image["file_name"]))
        if truth is not None:
            confusion += part_confusion(part_map, truth)
            dense_images += 1
        else:
            for annotation in gt.annotations.get((image["id"], 1), []):
                if "dp_I" in annotation:
                    truth_at_points, predicted_at_points = point_labels(annotation, part_map)
                    confusion += part_confusion(predicted_at_points, truth_at_points)
    metrics = evaluate(gt, records, surface)
    summary = {mode: metrics[mode]["AP"] for mode in ("gps", "gpsm", "iou") if mode in metrics}
    summary["box"] = metrics["bbox"]["AP"]
    summary["part_miou"] = part_miou(confusion)
    summary["part_miou_source"] = "dense" if dense_images == len(chosen) else ("points" if dense_images == 0 else "mixed")
    summary["images"] = len(chosen)
    return {"summary": summary, "metrics": metrics, "confusion": confusion.tolist()}


def _records(result: DensePoseResult, image_id: Any) -> list[dict]:
    """Evaluator records with the quantised charts inline (no PNG round trip)."""
    records = []
    for box, score, chart in zip(result.boxes, result.scores, result.charts):
        x0, y0, x1, y1 = (float(v) for v in box)
        records.append({"image_id": image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score),
                        "labels_uv": quantize_chart(chart)})
    return records
