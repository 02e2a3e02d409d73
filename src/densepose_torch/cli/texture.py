"""`densepose texture`: a person's appearance unwrapped into the 24-tile DensePose texture atlas
(and SMPL's texture layout), from photos or the frames of videos."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..devices import resolve_device
from ..errors import DensePoseError
from ..io.images import DEFAULT_MAX_PIXELS, write_picture
from ..io.inputs import expand_inputs
from ..jobs.predict import build_predictor
from ..render.texture import DEFAULT_TILE_SIZE
from ..surface import load_smpl_charts, require_smpl_charts_of
from ..surface.atlas import AtlasAccumulator, unwrap_inputs, write_atlas
from ..surface.smpl_texture import atlas_to_smpl, load_smpl_uv, smpl_texture_map
from .arguments import add_flip_arguments, add_model_file_arguments, add_precision_argument, check_min_score, model_choice, positive

EXAMPLES = """\
examples:
  densepose texture person.jpg -o atlas.png --model R_50_FPN_s1x
  densepose texture walk.mp4 -o atlas.png --model R_50_FPN_s1x --smpl-texture smpl_texture.png
  densepose predict other.jpg -o out --render texture --texture-atlas atlas.png --model R_50_FPN_s1x

The best-scoring person of every photo and every video frame is unwrapped: give pictures of one
person. Texels never seen are holes (alpha 0 in the PNG). The atlas is in the chart space of the
model (zoo models: DensePose's SMPL charts; the embedded default model: its synthetic body's); the
file records which, and the texture render refuses to paint it through the other body's charts.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "texture", help="unwrap a person's appearance into a DensePose texture atlas",
        description="Unwrap the person of photos or videos into the 24-tile DensePose texture atlas (RGBA PNG).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="photos, videos, folders, glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="ATLAS.png", help="the atlas to write (PNG)")
    parser.add_argument("--model", metavar="NAME|PATH", help="zoo model name, checkpoint file, or default (the embedded model, the default)")
    add_model_file_arguments(parser)
    add_flip_arguments(parser)
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available, else cpu)")
    add_precision_argument(parser)
    parser.add_argument("--min-score", type=float, default=0.8, help="people are detections above this (default 0.8)")
    parser.add_argument("--tile-size", type=positive(int), default=DEFAULT_TILE_SIZE, help=f"atlas tile side (default {DEFAULT_TILE_SIZE})")
    parser.add_argument("--smpl-texture", metavar="PATH.png", help="also write the atlas in SMPL's own UV texture layout "
                                                                   "(needs a model of SMPL charts and the [surface] extra)")
    parser.add_argument("--smpl-size", type=positive(int), default=512, help="side of the --smpl-texture image (default 512)")
    parser.add_argument("--recursive", action="store_true", help="include sub-folders")
    parser.add_argument("--max-pixels", type=positive(int), default=DEFAULT_MAX_PIXELS, help="largest image, width x height")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.suffix.lower() != ".png" or (args.smpl_texture and Path(args.smpl_texture).suffix.lower() != ".png"):
        raise DensePoseError("atlases are written as .png (their holes are alpha 0)")
    check_min_score(args.min_score)
    resolve_device(args.device)
    items = expand_inputs(args.inputs, args.recursive)
    if args.smpl_texture:
        charts, smpl_uv = load_smpl_charts(), load_smpl_uv()  # a missing extra is an error before any work
    predictor = build_predictor(model_choice(args), args.device, args.precision, args.min_score, top_person=True)
    if args.smpl_texture:
        require_smpl_charts_of(predictor.config.chart_body, "--smpl-texture")
    accumulator = AtlasAccumulator(args.tile_size, predictor.config.chart_body)
    failures: list[str] = []

    def report(message: str) -> None:
        failures.append(message)
        progress.write(f"densepose: {message}", file=sys.stderr)

    with tqdm(total=len(items), unit="file", desc="densepose texture") as progress:
        pictures, with_person = unwrap_inputs(items, predictor, accumulator, args.max_pixels, report, progress)
    if with_person == 0:
        raise DensePoseError(f"nobody above --min-score {args.min_score} in {pictures} pictures: no atlas written")
    atlas = accumulator.atlas()
    write_atlas(output, atlas, accumulator.chart_body)
    summary = f"densepose: {with_person} of {pictures} pictures had a person; atlas {output} covered at {accumulator.coverage():.1%}"
    if args.smpl_texture:
        texture = atlas_to_smpl(atlas, smpl_texture_map(charts, smpl_uv, args.smpl_size, args.tile_size))
        write_picture(args.smpl_texture, texture[:, :, :3])
        summary += f", SMPL texture {args.smpl_texture}"
    print(summary + (f"; {len(failures)} problems" if failures else ""), file=sys.stderr)
    return 1 if failures else 0
