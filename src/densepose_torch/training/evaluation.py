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

from ..definitions import NUM_PART_LABELS
from ..errors import DensePoseError
from ..evaluation.part_maps import part_confusion, part_miou
from ..inference import Predictor
from ..io.coco_results import result_to_records
from ..modeling import DensePoseRCNN
from ..results import DensePoseResult
from ..synthetic.dataset import dense_truth_path


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
    gt = gt.only_images(image["id"] for image in chosen)

    records: list[dict] = []
    confusion = np.zeros((NUM_PART_LABELS, NUM_PART_LABELS), dtype=np.int64)
    dense_images = 0
    folder = Path(images)
    for image in tqdm(chosen, desc="evaluating", unit="image", disable=not progress, leave=False):
        path = folder / image["file_name"]
        if not path.is_file():
            raise DensePoseError(f"held-out image {path} is missing")
        result = predict(path)
        records += result_to_records(result, image["id"], inline_charts=True)
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
