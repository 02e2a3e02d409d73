"""`densepose models` (list the model zoo) and `densepose download NAME` (fetch official weights)."""
from __future__ import annotations

import argparse
import sys

from ..checkpoint import fetch_zoo_checkpoint, zoo_checkpoint_path
from ..errors import DensePoseError
from ..io.download import OFFLINE_EXIT_CODE, cache_dir, checksum_ok
from ..zoo import ZOO, ZooModel, get_zoo_model


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
        rows.append((model.name, model.head, model.confidences, f"{m.box_ap:.1f}", gps, f"{m.gpsm_ap:.1f}", _cached(model)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"\nweights cache: {cache_dir()} (set DENSEPOSE_TORCH_CACHE to move it); metrics: detectron2 model zoo "
          "(COCO minival; the Atop10P family on densepose_chimps)")
    return 0


def _cached(model: ZooModel) -> str:
    """yes (present, checksum right), corrupt (present, checksum wrong) or -."""
    path = zoo_checkpoint_path(model)
    if not path.is_file():
        return "-"
    return "yes" if checksum_ok(path, model.md5_prefix) else "corrupt (md5 differs; download again)"


def download_models(args: argparse.Namespace) -> int:
    """Every named model in turn; one that fails is reported and the others still come. Exit 0 when
    all are there, 2 when every failure was the network's (as one failed download), else 1."""
    models = list(ZOO) if args.names == ["all"] else [get_zoo_model(name) for name in args.names]
    failures: list[tuple[ZooModel, DensePoseError]] = []
    for model in models:
        try:
            print(f"{model.name}: {fetch_zoo_checkpoint(model)}")
        except DensePoseError as error:
            failures.append((model, error))
            print(f"{model.name}: failed: {error}", file=sys.stderr)
    if not failures:
        return 0
    print(f"densepose download: {len(failures)} of {len(models)} failed: {', '.join(model.name for model, _ in failures)}",
          file=sys.stderr)
    return OFFLINE_EXIT_CODE if all(error.exit_code == OFFLINE_EXIT_CODE for _, error in failures) else 1
