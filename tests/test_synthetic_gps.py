"""The synthetic dataset and body surface work with the DensePose evaluator end to end: perfect
predictions (the dense ground truth itself, cut to each person's box) score near the top."""
from __future__ import annotations

import json

import numpy as np

from densepose_torch.evaluation import evaluate
from densepose_torch.io.coco_results import encode_chart
from densepose_torch.synthetic import AnnySurface, SynthJob, read_dense, write_dataset


def _oracle_predictions(out, coco):
    records = []
    for image in coco["images"]:
        dense = read_dense(out / "dense" / image["file_name"].replace(".jpg", ".npz"))
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = (int(v) for v in ann["bbox"])
            mine = dense.instance[y:y + h, x:x + w] == ann["instance_id"]
            # detectron2's quantisation: (uv * 255) truncated to uint8
            chart = np.stack([
                np.where(mine, dense.I[y:y + h, x:x + w], 0),
                np.where(mine, (dense.U[y:y + h, x:x + w] * 255).astype(np.uint8), 0),
                np.where(mine, (dense.V[y:y + h, x:x + w] * 255).astype(np.uint8), 0),
            ]).astype(np.uint8)
            records.append({"image_id": image["id"], "category_id": 1, "bbox": [x, y, w, h], "score": 1.0,
                            "uv_shape": list(chart.shape), "uv_data": encode_chart(chart)})
    return records


def test_ground_truth_as_prediction_scores_near_perfect_gps(tmp_path):
    out = tmp_path / "synth"
    write_dataset(SynthJob(out=out, seed=5, size=192), count=3, progress=False)
    coco = json.loads((out / "annotations.json").read_text())
    assert any("dp_x" in a for a in coco["annotations"])
    metrics = evaluate(out / "annotations.json", _oracle_predictions(out, coco), AnnySurface())
    assert metrics["iou"]["AP"] > 99.0 and metrics["bbox"]["AP"] > 99.0
    # Not exactly 100: the evaluator maps points with /255 where the format (and training) use
    # /256, and reads U, V quantised to 1/255; that costs a few points at the 0.95 threshold.
    assert metrics["gps"]["AP50"] > 99.0 and metrics["gps"]["AP"] > 85.0
