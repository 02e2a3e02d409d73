"""`densepose synth`: render a synthetic DensePose-COCO dataset (see synthetic/dataset.py)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import DensePoseError
from ..io.video import DEFAULT_FPS
from .arguments import positive

EXAMPLES = """\
examples:
  densepose synth --count 1000 --out data/synth --seed 0 --size 512
  densepose synth --count 5000 --out data/synth --seed 0 --size 512   # resumes and extends the run above
  densepose synth --count 200 --out data/synth-val --seed 1 --backgrounds ~/photos/places --workers 2

  densepose synth --video --count 20 --frames 50 --out clips --seed 7   # 20 clips of 2 s at 25 fps

output: OUT/annotations.json (DensePose-COCO), OUT/images/NNNNNN.jpg, OUT/dense/NNNNNN.npz
(dense I, U, V, instance; densepose_torch.synthetic.read_dense reads it).
With --video: OUT/clip_NNNN.mp4 per clip and OUT/clip_NNNN/ with the layout above for its frames
(instance_id in the annotations, and the instance map, number each person the same in every frame).
"""


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="render a synthetic DensePose-COCO dataset (images, annotations, dense ground truth)",
        description="Render random scenes of 1 to 4 people (the open anny body, DensePose charts) with "
        "exact DensePose ground truth, in DensePose-COCO format. Deterministic for a seed; an "
        "interrupted run resumes where it stopped.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=_at_least(1), required=True, metavar="N", help="number of images (of clips with --video)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=_at_least(0), default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=_at_least(32), default=512, metavar="PX", help="image side in pixels (default 512)")
    parser.add_argument("--backgrounds", metavar="DIR",
                        help="folder of background pictures, or scikit-image for the people-free photographs bundled "
                             "with scikit-image (used for 80%% of the images; default: procedural only)")
    parser.add_argument("--look", default="plain", metavar="{plain,photo}",
                        help="plain (default) or photo: distractor objects, scenes with nobody (--empty-share), colour casts, "
                             "lost resolution, motion blur and JPEG artefacts, as in real photographs")
    parser.add_argument("--person-height", type=positive(float), nargs=2, metavar=("LOW", "HIGH"),
                        help="standing height of a person as a fraction of the image height, drawn log-uniformly "
                             "(default 0.2 1.2; above 1 the frame cuts the person: close-ups)")
    parser.add_argument("--empty-share", type=float, metavar="FRACTION",
                        help="share of images with nobody in them, 0 to 1 (default: 0.1 with --look photo, 0 with plain)")
    parser.add_argument("--points", type=_at_least(1), default=100, metavar="N",
                        help="DensePose points per annotated person (default 100, as DensePose-COCO)")
    parser.add_argument("--workers", type=_at_least(1), default=min(2, os.cpu_count() or 1), metavar="N",
                        help="rendering processes (default: 2, or 1 on a single-core machine)")
    parser.add_argument("--video", action="store_true",
                        help="render clips of 1 to 3 people walking, turning and changing pose before a panning, "
                             "zooming camera, with dense truth in every frame")
    parser.add_argument("--frames", type=_at_least(2), default=50, metavar="N", help="frames per clip (--video; default 50)")
    parser.add_argument("--fps", type=positive(float), default=DEFAULT_FPS, help=f"frame rate of the clips (--video; default {DEFAULT_FPS:g})")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a previous dataset in DIR first (otherwise a run with the same settings resumes it)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..synthetic.dataset import SynthJob, write_clips, write_dataset

    if args.video and args.look != "plain":
        raise DensePoseError("--look photo is for still images; clips are rendered with the plain look")
    if args.video and args.person_height:
        raise DensePoseError("--person-height is for still images; clips frame their people themselves")
    if args.video and args.empty_share is not None:
        raise DensePoseError("--empty-share is for still images; every clip has people")
    job = SynthJob(out=args.out, seed=args.seed, size=args.size, backgrounds=args.backgrounds, num_points=args.points, fps=args.fps,
                   look=args.look, person_height=tuple(args.person_height) if args.person_height else None,
                   empty_share=args.empty_share)
    if args.video:
        summary = write_clips(job, args.count, args.frames, overwrite=args.overwrite, workers=args.workers)
        print(f"{summary['clips']} clips of {args.frames} frames ({summary['rendered']} frames rendered now), "
              f"{summary['person_frames']} annotated people summed over the frames -> {summary['path']}")
        return 0
    summary = write_dataset(job, args.count, overwrite=args.overwrite, workers=args.workers)
    print(f"{summary['images']} images ({summary['rendered']} rendered now), {summary['persons']} people, "
          f"{summary['persons_with_points']} with DensePose points -> {summary['path']}")
    return 0
