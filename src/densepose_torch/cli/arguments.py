"""Argument types shared by the sub-commands."""
from __future__ import annotations

import argparse
import math
from typing import Callable

from ..errors import DensePoseError


def positive(kind: type = int, zero: bool = False) -> Callable[[str], int | float]:
    """argparse type: a finite number of `kind` (int or float) above 0 (or 0 too, with `zero`),
    with a one-line error otherwise."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not ((value >= 0 if zero else value > 0) and math.isfinite(value)):
            what = "0 or a positive" if zero else "a positive"
            raise argparse.ArgumentTypeError(f"must be {what} {'whole ' if kind is int else ''}number, not {text!r}")
        return value

    return parse


def check_min_score(value: float) -> None:
    """A one-line DensePoseError unless --min-score is a score, 0 to 1."""
    if not 0.0 <= value <= 1.0:
        raise DensePoseError(f"--min-score must be between 0 and 1, not {value}")


PRECISION_HELP = ("exact (default) reproduces detectron2's float32 arithmetic; fast runs the whole network in bfloat16 where the CPU or "
                  "GPU supports it (fp32 and bf16 are accepted as the earlier names)")


def precision(text: str) -> str:
    """argparse type: exact or fast (fp32 and bf16, the earlier names, are accepted)."""
    from ..errors import DensePoseError
    from ..inference import precision_name

    try:
        return precision_name(text)
    except DensePoseError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", type=precision, default="exact", metavar="{exact,fast}", help=PRECISION_HELP)


def model_choice(args: argparse.Namespace):
    """The ModelChoice a command line names: --model, and for files --config, --trust-checkpoint and --backend."""
    from ..jobs.predict import ModelChoice

    return ModelChoice(args.model, getattr(args, "config", None), args.trust_checkpoint, getattr(args, "backend", None),
                       getattr(args, "flip", None), getattr(args, "uv_symmetry", None))


def add_flip_arguments(parser: argparse.ArgumentParser) -> None:
    """--flip / --no-flip (the test-time flip) and --uv-symmetry (the mirror tables of SMPL-chart models)."""
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time flip: run the DensePose head also on the mirrored image and average the two "
                             "(better parts and U/V; boxes and scores unchanged; a second backbone pass). Default: the "
                             "model's own setting, on for the embedded model, off for the zoo models")
    parser.add_argument("--uv-symmetry", metavar="PATH",
                        help="DensePose's UV_symmetry_transforms.mat, which --flip needs for models on SMPL charts (the zoo "
                             "models); the embedded model's mirror map is built in")


def add_model_file_arguments(parser: argparse.ArgumentParser, config: bool = True) -> None:
    """--trust-checkpoint and (for commands that load one model) --config."""
    if config:
        parser.add_argument("--config", metavar="NAME",
                            help="zoo architecture of a checkpoint file, for files whose keys fit several "
                                 "(default: from the checkpoint, a zoo name in its file name, or its keys)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load checkpoint files that hold more than weights (e.g. detectron2 training checkpoints with "
                             "pickled optimizer objects); such a file can run any code: only for files you trust")


BACKEND_HELP = ("what runs the network: torch (default), or the model exported to ONNX and run by onnxruntime or openvino "
                "(CPU; needs the onnx / openvino extra); .onnx and .xml files from `densepose export` pick their runtime themselves")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    from ..export.runtime import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, default=None, help=BACKEND_HELP)


LOCAL_RAY = "local"  # --ray without an address


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS] and the size of its actors."""
    parser.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
                        help="spread the work over a Ray cluster (ADDRESS: auto, host:6379 or ray://host:10001; without "
                             "it, a local Ray instance); workers write the outputs, so the output folder must be one "
                             "that every node sees; needs the [ray] extra")
    parser.add_argument("--ray-actors", type=positive(int), metavar="N",
                        help="model replicas on the cluster (default: as many as its CPUs, or GPUs, hold)")
    parser.add_argument("--ray-cpus", type=positive(float), default=1.0, metavar="N",
                        help="CPU cores per replica, also its torch threads (default 1)")
    parser.add_argument("--ray-gpus", type=positive(float, zero=True), default=0.0, metavar="N",
                        help="GPUs per replica (default 0; 0.5 puts two replicas on a GPU)")


def ray_options(args: argparse.Namespace):
    """The RayOptions of --ray and its sizes; None without --ray."""
    if args.ray is None:
        return None
    from ..jobs.ray import RayOptions

    return RayOptions(None if args.ray == LOCAL_RAY else args.ray, args.ray_actors, args.ray_cpus, args.ray_gpus)

