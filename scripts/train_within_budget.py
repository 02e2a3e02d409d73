"""Train a config in a fixed wall-clock budget: render its synthetic caches, time a short probe
run on the real data loader and device, then set the run's length (and its two learning-rate
drops, at 75 % and 90 % of it) so that training and the final evaluation end within the budget.

    python scripts/train_within_budget.py configs/default_model_gpu.yaml --budget 480
    python scripts/train_within_budget.py configs/default_model_gpu.yaml --budget 120 device=cpu data.num_workers=2

Made for a lent GPU whose time is counted (scripts/gpu_train_default_model.sh): a fixed
iteration count would either waste the time or be cut off before the drops that do most of the
work. The run itself is an ordinary `densepose train` run (its config.yaml records the length
chosen); what was measured is written to --report as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from densepose_torch import DensePoseError
from densepose_torch.io.atomic import atomic_write
from densepose_torch.training.config import TrainConfig, load_train_config
from densepose_torch.training.distributed import Processes
from densepose_torch.training.trainer import prepare_data, read_metrics, train

PROBE_ITERATIONS = 40  # the first PROBE_SKIP include start-up (workers, CUDA kernels) and are not timed
PROBE_SKIP = 10
FINAL_SHARE = 0.08  # of the budget kept for the final checkpoint and evaluation
MARGIN = 1.1  # iterations are planned 10 % slower than probed (checkpoints, slower batches)


def probe_seconds_per_iteration(config: TrainConfig, folder: Path) -> float:
    """Median seconds per iteration of a short run of `config` (no held-out evaluation)."""
    stamps: list[float] = []
    probe = replace(config, output=str(folder), data=replace(config.data, val=None),
                    checkpoint_period=PROBE_ITERATIONS,
                    solver=replace(config.solver, max_iter=PROBE_ITERATIONS, steps=(), warmup_iters=min(config.solver.warmup_iters, PROBE_ITERATIONS)))
    train(probe, progress=False, on_iteration=lambda done, model: stamps.append(time.monotonic()))
    return statistics.median(b - a for a, b in zip(stamps[PROBE_SKIP:], stamps[PROBE_SKIP + 1:]))


def planned_solver(config: TrainConfig, seconds_left: float, seconds_per_iteration: float):
    """The solver settings of a run that fits in `seconds_left`."""
    max_iter = int(seconds_left / (seconds_per_iteration * MARGIN))
    if max_iter < 100:
        raise DensePoseError(f"only {max_iter} iterations fit in the budget ({seconds_per_iteration:.2f} s each); give more time")
    return replace(config.solver, max_iter=max_iter, steps=(round(0.75 * max_iter), round(0.9 * max_iter)),
                   warmup_iters=min(config.solver.warmup_iters, max_iter // 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--budget", type=float, required=True, help="seconds for rendering, probing, training and the final evaluation")
    parser.add_argument("--report", type=Path, help="JSON of what was measured (default: OUTPUT/budget.json)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as for densepose train")
    args = parser.parse_intermixed_args()
    began = time.monotonic()
    try:
        config = load_train_config(args.config, args.overrides)
        output = Path(config.output)
        prepare_data(config, Processes(), progress=True)
        rendered = time.monotonic() - began
        seconds_per_iteration = probe_seconds_per_iteration(config, output.parent / f"{output.name}-probe")
        seconds_left = args.budget * (1 - FINAL_SHARE) - (time.monotonic() - began)
        config = replace(config, solver=planned_solver(config, seconds_left, seconds_per_iteration))
        print(f"rendered in {rendered:.0f} s; {seconds_per_iteration:.3f} s per iteration of {config.solver.ims_per_batch} images: "
              f"{config.solver.max_iter} iterations, drops at {list(config.solver.steps)}", flush=True)
        trained = time.monotonic()
        final = train(config, progress=True)
    except DensePoseError as error:
        sys.exit(f"train_within_budget: error: {error}")
    evaluations = [entry["eval"] for entry in read_metrics(output / "metrics.jsonl") if "eval" in entry]
    report = {
        "config": str(args.config), "overrides": args.overrides, "budget_s": args.budget, "render_s": round(rendered, 1),
        "seconds_per_iteration": round(seconds_per_iteration, 4), "ims_per_batch": config.solver.ims_per_batch,
        "max_iter": config.solver.max_iter, "steps": list(config.solver.steps), "train_s": round(time.monotonic() - trained, 1),
        "total_s": round(time.monotonic() - began, 1), "final": str(final), "evaluation": evaluations[-1] if evaluations else None,
    }
    with atomic_write(args.report or output / "budget.json", "w") as handle:
        json.dump(report, handle, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
