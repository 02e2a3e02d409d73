"""`densepose models` (list the model zoo) and `densepose download NAME` (fetch official weights)."""
from __future__ import annotations

import argparse

from ..checkpoint import fetch_zoo_checkpoint, zoo_checkpoint_path
from ..io.download import cache_dir
from ..zoo import ZOO, get_zoo_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("models", help="list the 27 official DensePose models and which are downloaded")
    listing.set_defaults(handler=list_models)
    download = subparsers.add_parser("download", help="download the official weights of zoo models")
    download.add_argument("names", nargs="+", metavar="NAME", help="zoo model names (see `densepose models`), or 'all'")
    download.set_defaults(handler=download_models)


def list_models(args: argparse.Namespace) -> int:
    rows = [("name", "head", "confidences", "box AP", "GPS AP", "GPSm AP", "cached")]
    for model in ZOO:
        m = model.metrics
        gps = f"{m.gps_ap:.1f}" + (f" (APex {m.gps_apex:.1f})" if m.gps_apex is not None else "")
        rows.append((model.name, model.head, model.confidences, f"{m.box_ap:.1f}", gps, f"{m.gpsm_ap:.1f}", "yes" if zoo_checkpoint_path(model).is_file() else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"\nweights cache: {cache_dir()} (set DENSEPOSE_TORCH_CACHE to move it); metrics: detectron2 model zoo "
          "(COCO minival; the Atop10P family on densepose_chimps)")
    return 0


def download_models(args: argparse.Namespace) -> int:
    models = list(ZOO) if args.names == ["all"] else [get_zoo_model(name) for name in args.names]
    for model in models:
        print(f"{model.name}: {fetch_zoo_checkpoint(model)}")
    return 0
