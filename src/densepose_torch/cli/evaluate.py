"""`densepose evaluate`: the official DensePose-COCO metrics (GPS, GPSm, IOU AP/AR and box AP)
of a results file, or of a model's predictions on the ground truth's images."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import DensePoseError
from ..io.atomic import atomic_write
from .arguments import add_backend_argument, add_flip_arguments, add_model_file_arguments, add_precision_argument, model_choice

EXAMPLES = """examples:
  densepose evaluate --gt densepose_minival2014.json --pred results.json -o metrics.json
  densepose evaluate --gt ann.json --pred out/json/ --surface official:~/densepose_data
  densepose evaluate --gt ann.json --model R_50_FPN_s1x --images val2014/ --pred-out preds.json

surfaces (GPS needs a body model):
  (default)     synthetic for a set `densepose synth` wrote, official for any other
  official      DensePose's SMPL files, downloaded once (~1.5 GB) into the cache
                ($DENSEPOSE_TORCH_CACHE, default ~/.cache/densepose_torch)
  official:DIR  the same files from DIR (SMPL_subdiv.mat, SMPL_SUBDIV_TRANSFORM.mat, Pdist_matrix.pkl)
  synthetic     the anny body of our synthetic data engine
  none          no GPS/GPSm: mask IOU and box AP only
"""
MODE_LABELS = {"gps": "GPS", "gpsm": "GPSm", "iou": "IOU"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="DensePose-COCO metrics (GPS, GPSm, IOU AP and box AP) of predictions",
        description="Evaluate DensePose predictions against DensePose-COCO annotations exactly as "
        "detectron2's official evaluator does.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gt", required=True, metavar="ANN.json", help="DensePose-COCO annotation file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", metavar="RESULTS", help="COCO DensePose results file, or a folder of them")
    source.add_argument("--model", metavar="NAME|PATH", help="predict first with this zoo model, checkpoint, or default (the embedded model)")
    add_model_file_arguments(parser)
    add_flip_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("--images", metavar="DIR", help="with --model: folder holding the ground truth's images")
    parser.add_argument("--pred-out", metavar="RESULTS.json",
                        help="with --model: save the predictions here; an interrupted run resumes, a finished one is reused")
    parser.add_argument("--device", default=None, help="with --model: cpu or cuda (default: cuda when available)")
    add_precision_argument(parser)
    parser.add_argument("--surface", metavar="SURFACE",
                        help="official, official:DIR, synthetic or none (default: synthetic for sets written by "
                             "`densepose synth`, official for the others); see below")
    parser.add_argument("--min-iou", type=float, default=0.5, metavar="T",
                        help="lowest matching threshold: 0.5 (AP over 0.50:0.95, default) or e.g. 0.2 (the APex variant)")
    parser.add_argument("-o", "--output", metavar="METRICS.json", help="also write the metrics as JSON")
    parser.set_defaults(handler=run)


def _predictions(gt, args: argparse.Namespace) -> list[dict]:
    """Results records of --model on the ground truth's images in --images (reusing a finished
    --pred-out file, resuming an interrupted one)."""
    from ..jobs.ground_truth import predict_ground_truth_images
    from ..jobs.predict import build_predictor

    if not args.images:
        raise DensePoseError("--model needs --images DIR (the folder holding the ground truth's images)")
    return predict_ground_truth_images(
        gt, args.images, lambda: build_predictor(model_choice(args), args.device, args.precision), args.pred_out,
        notice=lambda message: print(f"densepose evaluate: {message}", file=sys.stderr),
    )


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(metrics: dict) -> str:
    """The metrics as a fixed-width table: one row per DensePose mode, then box AP."""
    lines = []
    modes = [mode for mode in MODE_LABELS if mode in metrics]
    if modes:
        names = list(metrics[modes[0]])
        lines.append(f"{'':6}" + "".join(f"{name:>8}" for name in names))
        for mode in modes:
            lines.append(f"{MODE_LABELS[mode]:6}" + "".join(f"{_cell(metrics[mode][name]):>8}" for name in names))
    box = metrics["bbox"]
    lines.append("")
    lines.append(f"{'':6}" + "".join(f"{name:>8}" for name in box))
    lines.append(f"{'box':6}" + "".join(f"{_cell(value):>8}" for value in box.values()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # scipy and the evaluator load only when evaluating, not for every `densepose` command.
    from ..evaluation import evaluate, load_ground_truth
    from ..evaluation.surface_names import resolve_surface, surface_for

    if args.images and not args.model:
        raise DensePoseError("--images goes with --model (to evaluate a results file, use --pred alone)")
    gt = load_ground_truth(Path(args.gt))
    surface_name = surface_for(gt.dataset, args.surface)
    surface = resolve_surface(surface_name)
    predictions = _predictions(gt, args) if args.model else Path(args.pred)
    metrics = evaluate(gt, predictions, surface, min_iou=args.min_iou, progress=True)
    counts, thresholds = metrics["counts"], metrics["settings"]["thresholds"]
    print(
        f"{counts['images']} images, {counts['persons']} persons ({counts['densepose_persons']} with DensePose points), "
        f"{counts['detections']} detections; thresholds {thresholds[0]:.2f}:{thresholds[-1]:.2f}, at most 20 detections per image"
    )
    if surface is None:
        print(f"no body surface (--surface {surface_name}): GPS and GPSm not computed")
    print(format_table(metrics))
    if args.output:
        with atomic_write(args.output, "w") as handle:
            json.dump(metrics, handle, indent=2)
        print(f"metrics written to {args.output}")
    return 0
