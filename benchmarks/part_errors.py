"""Where a model's body-part labels go wrong on a synthetic held-out set with dense ground truth.

    python benchmarks/part_errors.py out/synth-val --count 40                 # the embedded default model
    python benchmarks/part_errors.py out/synth-val --model out/run/model_final.pth

Pastes the detections scoring above --min-score into a part map, as the training evaluation
does, and prints: the share of ground-truth body pixels the model calls body (recall), the share
of its body pixels that are body (precision), the share of pixels found on both sides that get the
right part, the fine-part mIoU, the commonest part confusions, and for every left/right pair (and
the torso's back/front) how often one side is called the other.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from densepose_torch import DensePoseError, Predictor, load_model
from densepose_torch.definitions import NUM_PART_LABELS, PART_NAMES
from densepose_torch.evaluation.part_maps import left_right_confusion, part_confusion, part_miou
from densepose_torch.synthetic.dataset import dense_truth_path, read_dense


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a folder written by `densepose synth` (annotations.json, images/, dense/)")
    parser.add_argument("--model", default=None, help="zoo name or checkpoint (default: the embedded model)")
    parser.add_argument("--count", type=int, default=40, help="the first COUNT images")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--top", type=int, default=8, help="confusions to list")
    args = parser.parse_args()

    annotations = args.dataset / "annotations.json"
    if not annotations.is_file():
        raise SystemExit(f"part_errors: error: {annotations} does not exist (give a folder written by `densepose synth`)")
    dataset = json.loads(annotations.read_text(encoding="utf-8"))
    try:
        predictor = Predictor(load_model(args.model), min_score=args.min_score)
    except DensePoseError as error:
        raise SystemExit(f"part_errors: error: {error}") from None
    confusion = np.zeros((NUM_PART_LABELS, NUM_PART_LABELS), np.int64)
    for image in dataset["images"][: args.count]:
        shown = predictor(args.dataset / "images" / image["file_name"])
        predicted = shown.to_dense().I if len(shown) else np.zeros(shown.image_size, np.uint8)
        truth = dense_truth_path(annotations, dataset, image["file_name"])
        if truth is None:
            raise SystemExit(f"part_errors: error: {annotations} names no dense ground truth (give a folder written by `densepose synth`)")
        confusion += part_confusion(predicted, read_dense(truth).I)

    body = confusion[1:, 1:]
    print(f"{min(args.count, len(dataset['images']))} images of {args.dataset}, model {args.model or 'default'}")
    print(f"body recall     {body.sum() / confusion[1:].sum():.3f}")
    print(f"body precision  {body.sum() / confusion[:, 1:].sum():.3f}")
    print(f"part accuracy   {np.trace(body) / body.sum():.3f}  (pixels that are body and called body)")
    print(f"fine-part mIoU  {part_miou(confusion):.3f}")
    wrong = body.astype(np.float64) / np.maximum(body.sum(axis=1, keepdims=True), 1)
    np.fill_diagonal(wrong, 0)
    print("commonest confusions (share of the true part's body pixels):")
    for flat in np.argsort(-wrong, axis=None)[: args.top]:
        true, called = np.unravel_index(flat, wrong.shape)
        print(f"  I={true + 1:2d} called I={called + 1:2d}  {wrong[true, called]:.2f}")
    print("mirror confusions (share of a pair's pixels labelled within the pair that got the other side):")
    for a, b, share in left_right_confusion(confusion):
        print(f"  I={a:2d} / I={b:2d}  {share:.3f}  {PART_NAMES[a]} / {PART_NAMES[b]}")


if __name__ == "__main__":
    main()
