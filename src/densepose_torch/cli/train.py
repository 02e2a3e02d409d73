"""`densepose train`: train a DensePose R-CNN from a YAML config (or evaluate a trained one)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DensePoseError

EXAMPLES = """examples:
  densepose train configs/default_model.yaml                      # the embedded default model
  densepose train configs/default_model.yaml --resume             # continue after a kill
  densepose train configs/R_50_FPN_s1x.yaml --output out/r50 solver.ims_per_batch=2 solver.base_lr=0.0025
  torchrun --nproc_per_node 8 -m densepose_torch.cli train configs/R_50_FPN_s1x.yaml
  densepose train configs/default_model.yaml --eval-only --model out/default_model/model_final.pth
  densepose train configs/ablation/distillation.yaml        # teacher, dense labels, then the student
  densepose train configs/ablation/fully_convolutional.yaml --eval-only --teacher --model out/ablation/region/model_final.pth

overrides: KEY=VALUE with dotted keys into the config, values read as YAML
  (solver.max_iter=500  data.num_workers=0  model.head_convs=4  data.min_size_train=[224,256]).
outputs in OUTPUT (config `output`, or --output): config.yaml, metrics.jsonl, loss_curves.png,
  model_NNNNNNN.pth checkpoints, model_final.pth; every .pth works with `densepose predict --model`.
"""


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="DIR", help="output folder (default: the config's `output`)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the output folder from its last checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --model on the config's held-out set (data.val)")
    parser.add_argument("--model", metavar="PATH", help="with --eval-only: checkpoint to evaluate (default: OUTPUT/model_final.pth)")
    parser.add_argument("--teacher", action="store_true",
                        help="with --eval-only: train the config's distillation teacher if needed, then evaluate it as a fully "
                        "convolutional model on the person boxes that --model detects")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a DensePose R-CNN (any zoo architecture or a small one) from a YAML config",
        description="Train DensePose R-CNN as detectron2 does (losses, sampling, schedule), on DensePose-COCO "
        "files or synthetic data. Under torchrun, one process per GPU (or CPU process with gloo).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG.yaml", help="training config (see configs/)")
    # Options may also follow CONFIG, mixed with the overrides: that tail is parsed in run().
    parser.add_argument("overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="config overrides, e.g. solver.base_lr=0.02")
    _add_options(parser)
    parser.set_defaults(handler=run)


def _parse_tail(args: argparse.Namespace) -> argparse.Namespace:
    """Options and overrides after CONFIG, in any order."""
    tail = argparse.ArgumentParser(prog="densepose train CONFIG.yaml", add_help=False)
    tail.add_argument("overrides", nargs="*")
    _add_options(tail)
    parsed = tail.parse_intermixed_args(args.overrides)
    for name in ("output", "model"):
        if getattr(parsed, name) is None:
            setattr(parsed, name, getattr(args, name))
    parsed.resume = parsed.resume or args.resume
    parsed.eval_only = parsed.eval_only or args.eval_only
    parsed.teacher = parsed.teacher or args.teacher
    parsed.config = args.config
    return parsed


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_train_config

    args = _parse_tail(args)
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output={args.output}")
    config = load_train_config(Path(args.config), overrides)
    if args.teacher and not args.eval_only:
        raise DensePoseError("--teacher goes with --eval-only (training a distillation config trains its teacher first)")
    if args.eval_only:
        return _evaluate(config, args.model, args.teacher)
    if args.model:
        raise DensePoseError("--model goes with --eval-only (to start training from weights, set init_weights=PATH)")
    from ..training.trainer import train

    final = train(config, resume=args.resume)
    print(f"trained weights: {final}  (use them with: densepose predict IMAGES -o OUT --model {final})")
    return 0


def _evaluate(config, model_path: str | None, teacher: bool = False) -> int:
    from ..training.trainer import evaluate_trained

    path, result = evaluate_trained(config, model_path, teacher)
    summary = result["summary"]
    print(f"{path} on {summary['images']} held-out images (surface {config.data.eval_surface}):")
    for key, value in summary.items():
        print(f"  {key:18} {value:.3f}" if isinstance(value, float) else f"  {key:18} {value}")
    print(f"metrics written to {Path(config.output) / 'evaluation.json'}")
    return 0
