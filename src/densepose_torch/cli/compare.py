"""`densepose compare`: run many DensePose models over a folder of images (optionally with
ground truth) and write a report to compare them (see densepose_torch.compare)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import add_model_file_arguments, add_precision_argument, add_ray_arguments, positive, ray_options

EXAMPLES = """\
examples:
  densepose compare --models all --images photos/ -o report/
  densepose compare --models R_50_FPN_s1x,R_101_FPN_DL_s1x my_model.pth --images photos/ -o report/ --limit 50
  densepose compare --models all --images synth/images --gt synth/annotations.json --surface synthetic -o report/
  densepose compare --models all --images /nfs/photos -o /nfs/report --ray auto --ray-gpus 1   # one model per GPU actor

models: `all` = every zoo model whose weights are downloaded (`densepose download NAME`), plus the
embedded default model; the others are listed as skipped. Zoo names, `default` and checkpoint
paths can be mixed, comma separated or as separate arguments.

REPORT_DIR/index.html opens offline in any browser; results.csv and results.json hold the same
figures; REPORT_DIR/cache keeps every (model, image) result, so running the same command again
resumes an interrupted comparison and only redraws the report.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..render import PRESETS

    parser = subparsers.add_parser(
        "compare", help="compare many DensePose models on your own images (speed, memory, agreement, AP, pictures)",
        description="Run several DensePose models over the same images and write a self-contained HTML report "
        "(sortable table, speed-versus-quality plot, agreement heat-map, picture grid) with CSV and JSON.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", nargs="+", required=True, metavar="MODELS",
                        help="all, default, zoo names and checkpoint paths, as comma lists or separate arguments")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of images (sorted by name)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPORT_DIR", help="folder for the report and its cache")
    parser.add_argument("--gt", type=Path, metavar="ANN.json",
                        help="DensePose-COCO ground truth of the images: adds GPS, GPSm, IOU and box AP")
    parser.add_argument("--surface", metavar="SURFACE",
                        help="with --gt: body surface for GPS, as `densepose evaluate`: official, official:DIR, synthetic or "
                             "none (default: synthetic for sets `densepose synth` wrote, official for the others)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    add_precision_argument(parser)
    add_model_file_arguments(parser, config=False)
    parser.add_argument("--batch-size", type=positive(int), metavar="N",
                        help="images per model call (default: 1 on the CPU, 4 on CUDA); latency is then a batch's time per image")
    parser.add_argument("--limit", type=positive(int), metavar="N", help="only the first N images")
    parser.add_argument("--render", choices=tuple(PRESETS), default="viton", metavar="PRESET",
                        help=f"picture preset of the grid: {', '.join(PRESETS)} (default viton)")
    parser.add_argument("--min-score", type=float, default=0.8, metavar="S",
                        help="detections kept for pictures, agreement and detections/image (default 0.8, as predict); "
                             "AP is computed on every detection")
    add_ray_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import CompareConfig, compare

    config = CompareConfig(
        models=tuple(args.models), images=args.images, output=args.output, ground_truth=args.gt, surface=args.surface,
        device=args.device, precision=args.precision, batch_size=args.batch_size, limit=args.limit,
        render=args.render, min_score=args.min_score, trust_checkpoint=args.trust_checkpoint, ray=ray_options(args),
    )
    comparison = compare(config)
    ran = [run for run in comparison.runs if run.ran]
    not_downloaded = [run.spec.name for run in comparison.runs if run.spec.skip_reason is not None]
    if not_downloaded:
        print(f"densepose compare: skipped {len(not_downloaded)} zoo models whose weights are not downloaded "
              f"(`densepose download NAME`): {', '.join(not_downloaded)}", file=sys.stderr)
    for run in comparison.runs:
        if not run.ran and run.spec.skip_reason is None:
            print(f"densepose compare: skipped {run.spec.name}: {run.skip_reason}", file=sys.stderr)
    if not ran:
        print(f"densepose compare: no model ran (all {len(comparison.runs)} skipped); report in {comparison.index}", file=sys.stderr)
        return 1
    print(f"densepose compare: {len(ran)} of {len(comparison.runs)} models compared; open {comparison.index}", file=sys.stderr)
    return 0
