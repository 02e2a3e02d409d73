"""`densepose` command line. Each sub-command lives in its own module of this package, which
adds its parser with `add_parser(subparsers)` and sets `handler` to a function(args) -> exit code."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import DensePoseError


def build_parser() -> argparse.ArgumentParser:
    from . import compare as compare_cmd
    from . import evaluate as evaluate_cmd
    from . import export as export_cmd
    from . import models as models_cmd
    from . import predict as predict_cmd
    from . import serve as serve_cmd
    from . import synth as synth_cmd
    from . import texture as texture_cmd
    from . import train as train_cmd

    parser = argparse.ArgumentParser(prog="densepose", description="Dense human pose estimation (DensePose) in plain PyTorch.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in (predict_cmd, texture_cmd, models_cmd, synth_cmd, train_cmd, evaluate_cmd, compare_cmd, serve_cmd, export_cmd):
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except DensePoseError as error:
        print(f"densepose: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("densepose: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`densepose models | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
