"""How right a distillation teacher's dense labels are, checked against the dense ground truth of
the synthetic set they were written for.

    python benchmarks/label_accuracy.py out/ablation/teacher/labels_0 out/ablation/synth-train

LABELS is the folder `densepose train` writes for a `distillation:` section (its annotations.json
holds each person's sparse points followed by the teacher's); DATASET is the `densepose synth`
folder the teacher was trained on. Only the teacher's points are scored (the sparse ones are the
ground truth itself). Prints the teacher points per person, the share of them whose part is the
part under them in the rendered ground truth, and the mean |U| and |V| error where the part is right.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from densepose_torch.synthetic.dataset import dense_truth_path, read_dense
from densepose_torch.training.losses import DP_FRAME


def _load(path: Path, what: str) -> dict:
    if not path.is_file():
        raise SystemExit(f"label_accuracy: error: {path} does not exist ({what})")
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", type=Path, help="a dense-label folder (LABELS/annotations.json)")
    parser.add_argument("dataset", type=Path, help="the `densepose synth` folder the labels were written for")
    parser.add_argument("--count", type=int, default=500, help="score the first COUNT people")
    args = parser.parse_args()

    labelled = _load(args.labels / "annotations.json", "give a folder of a distillation run's dense labels")
    source = args.dataset / "annotations.json"
    original = _load(source, "give the `densepose synth` folder of the labels")
    sparse_count = {a["id"]: len(a.get("dp_x", ())) for a in original["annotations"]}
    files = {image["id"]: image["file_name"] for image in original["images"]}

    people = right = 0
    points = 0
    u_error, v_error = [], []
    truth_image, truth = None, None  # an image's people are consecutive: read its ground truth once
    for annotation in labelled["annotations"]:
        if people >= args.count:
            break
        if "dp_x" not in annotation or annotation["id"] not in sparse_count:
            continue
        first = sparse_count[annotation["id"]]
        part = np.asarray(annotation["dp_I"][first:], dtype=np.int64)
        if part.size == 0:
            continue
        if annotation["image_id"] != truth_image:
            truth_image = annotation["image_id"]
            path = dense_truth_path(source, original, files[truth_image])
            if path is None:
                raise SystemExit(f"label_accuracy: error: {args.dataset} names no dense ground truth (give a `densepose synth` folder)")
            truth = read_dense(path)
        x, y, w, h = annotation["bbox"]
        col = np.asarray(annotation["dp_x"][first:]) / DP_FRAME * w + x
        row = np.asarray(annotation["dp_y"][first:]) / DP_FRAME * h + y
        row = np.clip(row.astype(np.int64), 0, truth.I.shape[0] - 1)
        col = np.clip(col.astype(np.int64), 0, truth.I.shape[1] - 1)
        on_body = truth.I[row, col] > 0
        correct = on_body & (truth.I[row, col] == part)
        people += 1
        points += int(on_body.sum())
        right += int(correct.sum())
        u_error.append(np.abs(np.asarray(annotation["dp_U"][first:])[correct] - truth.U[row, col][correct]))
        v_error.append(np.abs(np.asarray(annotation["dp_V"][first:])[correct] - truth.V[row, col][correct]))
    if not points:
        raise SystemExit("label_accuracy: error: no teacher points found (are LABELS and DATASET the same set?)")
    print(f"{people} people, {points / people:.0f} teacher points each on the rendered body")
    print(f"part accuracy   {right / points:.3f}")
    print(f"|U| error       {np.concatenate(u_error).mean():.3f}  (where the part is right)")
    print(f"|V| error       {np.concatenate(v_error).mean():.3f}")


if __name__ == "__main__":
    main()
