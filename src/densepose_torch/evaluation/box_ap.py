"""Standard COCO box AP of the same detections, through pycocotools (what detectron2's
COCOEvaluator reports next to the DensePose metrics)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .ground_truth import GroundTruth

BOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def box_ap(ground_truth: GroundTruth, detections: list[dict]) -> dict[str, float | None]:
    """AP, AP50, AP75, APs, APm, APl in percent (None where COCOeval reports -1).
    `detections`: dicts with image_id, category_id, bbox [x, y, w, h] and score."""
    if not detections:
        has_persons = any(not ann["iscrowd"] for ann in ground_truth.dataset["annotations"])
        return {name: 0.0 if has_persons else None for name in BOX_METRICS}
    results = [
        {"image_id": d["image_id"], "category_id": d["category_id"], "bbox": [float(v) for v in d["bbox"]], "score": float(d["score"])}
        for d in detections
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        # COCOeval writes flags into the annotation dicts: give it copies.
        coco_gt.dataset = dict(ground_truth.dataset, annotations=[dict(a) for a in ground_truth.dataset["annotations"]])
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {name: (float(value) * 100 if value > -1 else None) for name, value in zip(BOX_METRICS, np.asarray(coco_eval.stats)[:6])}
