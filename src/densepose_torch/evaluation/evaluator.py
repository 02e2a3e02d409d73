"""`evaluate`: the official DensePose-COCO metrics (GPS, GPSm and IOU AP/AR) plus box AP."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from ..errors import DensePoseError
from ..io.coco_results import decode_chart, load_results
from .average_precision import AREA_RANGES, MAX_DETECTIONS, RECALL_THRESHOLDS, iou_thresholds, precision_recall, summarize
from .box_ap import box_ap
from .ground_truth import GroundTruth, load_ground_truth
from .matching import ImageMatches, match_image
from .similarity import box_iou_matrix, gps_matrix, mask_iou_matrix
from .surface import BodySurface

MODES = ("gps", "gpsm", "iou")  # detectron2 reports them as densepose_gps, densepose_gpsm, densepose_segm


def _detections(predictions: str | os.PathLike | Iterable[dict], ground_truth: GroundTruth) -> list[dict]:
    """Records with `image_id` set to the ground truth's id: a record's `file_name`, when it
    names a ground-truth image, wins over its image_id."""
    if isinstance(predictions, (str, os.PathLike)):
        records = load_results(predictions, decode=False)  # charts are decoded image by image
    else:
        records = [dict(record) for record in predictions]
    unknown = []
    for index, record in enumerate(records):
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in record:
                raise DensePoseError(f"detection {index} lacks {key}")
        name = record.get("file_name")
        if isinstance(name, str) and Path(name).name in ground_truth.file_names:
            record["image_id"] = ground_truth.file_names[Path(name).name]
        elif record["image_id"] not in ground_truth.image_sizes:
            unknown.append(record["image_id"])
    if unknown:
        raise DensePoseError(
            f"{len(unknown)} detections refer to images that are not in the ground truth (e.g. image_id {unknown[0]!r})"
        )
    return records


def evaluate(
    ground_truth: str | os.PathLike | dict | GroundTruth,
    predictions: str | os.PathLike | Iterable[dict],
    surface: BodySurface | None,
    min_iou: float = 0.5,
    progress: bool = False,
) -> dict[str, Any]:
    """DensePose-COCO evaluation exactly as detectron2's DensePoseCocoEval.

    `ground_truth`: a DensePose-COCO annotation file or dict. `predictions`: a results file
    or records (`io.coco_results`). `surface`: the body model for GPS (e.g.
    `load_official_surface(folder)`); None evaluates IOU and box AP only. `min_iou`: lowest
    threshold (0.5: AP over 0.50:0.95; 0.2: the "APex" variant over 0.20:0.95).

    Returns {"gps", "gpsm", "iou": {AP, [AP20, AP30, AP40,] AP50, AP75, APm, APl, AR, AR50,
    AR75, ARm, ARl}, "bbox": {AP, AP50, AP75, APs, APm, APl}, "settings", "counts"}, figures
    in percent, None where the official evaluator reports -1 (no person to find).
    """
    if not 0.0 < float(min_iou) <= 0.95:
        raise DensePoseError(f"min_iou must be in (0, 0.95], got {min_iou}")
    gt = load_ground_truth(ground_truth)
    detections = _detections(predictions, gt)
    thresholds = iou_thresholds(float(min_iou))
    modes = MODES if surface is not None else ("iou",)
    areas = list(AREA_RANGES)

    by_key: dict[tuple, list[dict]] = {}
    for record in detections:
        by_key.setdefault((record["image_id"], record["category_id"]), []).append(record)

    # matches[mode][category index][area index] -> list over images (ascending id)
    matches: dict[str, list[list[list[ImageMatches]]]] = {
        mode: [[[] for _ in areas] for _ in gt.category_ids] for mode in modes
    }
    for image_id in tqdm(gt.image_ids, desc="evaluating", unit="image", disable=not progress, leave=False):
        for k, category in enumerate(gt.category_ids):
            persons = gt.annotations.get((image_id, category), [])
            dets = by_key.get((image_id, category), [])
            if not persons and not dets:
                continue
            order = np.argsort([-float(d["score"]) for d in dets], kind="mergesort")[:MAX_DETECTIONS]
            dets = [dets[i] for i in order]
            bboxes = np.array([[float(v) for v in d["bbox"]] for d in dets], np.float64).reshape(-1, 4)
            # Only the evaluated (top 20) charts are decoded, one image at a time.
            charts = [np.asarray(d["labels_uv"]) if "labels_uv" in d else decode_chart(d) for d in dets]
            scores = np.array([float(d["score"]) for d in dets], np.float64)
            image_size = gt.image_sizes[image_id]

            mask_iou = mask_iou_matrix(persons, bboxes, charts, image_size)
            similarities = {"iou": mask_iou}
            if surface is not None:
                gps = gps_matrix(persons, bboxes, charts, surface)
                similarities.update(gps=gps, gpsm=np.sqrt(gps * mask_iou))
            box_iou = box_iou_matrix(persons, bboxes)
            person_ignored = np.array(["dp_x" not in p for p in persons], bool)
            person_crowd = np.array([bool(p.get("iscrowd", 0)) for p in persons], bool)
            person_areas = np.array([float(p["area"]) for p in persons], np.float64)
            detection_areas = bboxes[:, 2] * bboxes[:, 3]
            for mode in modes:
                for a, area in enumerate(areas):
                    matches[mode][k][a].append(
                        match_image(
                            similarities[mode], box_iou, scores, detection_areas,
                            person_ignored, person_crowd, person_areas, AREA_RANGES[area], thresholds,
                        )
                    )

    metrics: dict[str, Any] = {}
    shape = (len(thresholds), RECALL_THRESHOLDS.size, len(gt.category_ids), len(areas))
    for mode in modes:
        precision, recall = -np.ones(shape), -np.ones((shape[0], shape[2], shape[3]))
        for k in range(len(gt.category_ids)):
            for a in range(len(areas)):
                curves = precision_recall(matches[mode][k][a], len(thresholds))
                if curves is not None:
                    precision[:, :, k, a], recall[:, k, a] = curves
        metrics[mode] = summarize(precision, recall, thresholds, areas)
    metrics["bbox"] = box_ap(gt, detections)
    annotations = gt.dataset["annotations"]
    metrics["settings"] = {
        "min_iou": float(min_iou),
        "thresholds": [round(float(t), 4) for t in thresholds],
        "max_detections": MAX_DETECTIONS,
    }
    metrics["counts"] = {
        "images": len(gt.image_sizes),
        "persons": len(annotations),
        "densepose_persons": sum("dp_x" in ann for ann in annotations),
        "detections": len(detections),
    }
    return metrics
