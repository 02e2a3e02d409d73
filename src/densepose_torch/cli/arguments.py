"""Argument types shared by the sub-commands."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable

from ..errors import DensePoseError


def positive(kind: type = int) -> Callable[[str], int | float]:
    """argparse type: a finite number of `kind` (int or float) above 0, with a one-line error otherwise."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {'whole ' if kind is int else ''}number, not {text!r}")
        return value

    return parse


def check_min_score(value: float) -> None:
    """A one-line DensePoseError unless --min-score is a score, 0 to 1."""
    if not 0.0 <= value <= 1.0:
        raise DensePoseError(f"--min-score must be between 0 and 1, not {value}")


PRECISION_HELP = "exact (default) reproduces detectron2's float32 arithmetic; fast runs the whole network in bfloat16 where the CPU or GPU supports it (fp32 and bf16 are accepted as the earlier names)"


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


@dataclass(frozen=True)
class ModelChoice:
    """The model a command line names: --model, and for files --config and --trust-checkpoint."""

    name: str | None  # zoo name, checkpoint path, "default" or None (the embedded model)
    config: str | None = None  # zoo architecture of a checkpoint whose keys do not settle it
    trust_checkpoint: bool = False
    backend: str | None = None  # torch, onnxruntime or openvino (None: torch, or the exported file's runtime)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ModelChoice":
        return cls(args.model, getattr(args, "config", None), args.trust_checkpoint, getattr(args, "backend", None))


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
