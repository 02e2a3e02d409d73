"""Training speed: seconds per iteration (forward, backward, SGD step) of a config's model on
batches of synthetic images, without data loading.

    python benchmarks/bench_training.py                                  # configs/default_model.yaml
    python benchmarks/bench_training.py configs/R_50_FPN_s1x.yaml --images 2 --size 800 --device cuda
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_training.py --threads 2
    python benchmarks/bench_training.py --system-malloc     # without allocator.keep_freed_memory's malloc settings

Prints the median and best of --iterations timed steps after --warmup untimed ones.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from densepose_torch.allocator import keep_freed_memory
from densepose_torch.chart_symmetry import FlipSymmetry
from densepose_torch.data.loader import SyntheticSource, TrainingDataset
from densepose_torch.data.mapper import Augmentation
from densepose_torch.training.config import load_train_config
from densepose_torch.training.model import TrainingModel
from densepose_torch.training.solver import build_optimizer
from densepose_torch.training.trainer import build_training_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "default_model.yaml"))
    parser.add_argument("--images", type=int, help="images per iteration (default: the config's solver.ims_per_batch)")
    parser.add_argument("--size", type=int, help="rendered image side (default: the config's first min_size_train)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--system-malloc", action="store_true", help="leave glibc's malloc settings as they are (densepose train changes them on a CPU)")
    args = parser.parse_args()

    # The starting weights do not change the speed (and an earlier stage named there would train first).
    config = replace(load_train_config(args.config), init_weights=None)
    if args.threads:
        torch.set_num_threads(args.threads)
    images = args.images or config.solver.ims_per_batch
    size = args.size or config.data.min_size_train[0]
    source = SyntheticSource(size, seed=0, count=images, num_points=100)
    dataset = TrainingDataset(source, images, Augmentation((size,), 10 * size, True, FlipSymmetry()), seed=0)
    batch = [dataset[(i, i)] for i in range(images)]

    device = torch.device(args.device)
    if device.type == "cpu" and not args.system_malloc:
        keep_freed_memory()  # as densepose train does
    model = build_training_model(config).to(device)
    network = TrainingModel(model, config.loss)
    optimizer = build_optimizer(model, config.solver)
    autocast = config.solver.amp and device.type == "cuda"
    times = []
    for step in range(args.warmup + args.iterations):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            total = sum(network(batch).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - began)
    malloc = ", system malloc" if args.system_malloc else ""
    print(f"{Path(args.config).name}: {images} images of {size} px per iteration on {device} "
          f"({torch.get_num_threads()} threads{malloc}): median {statistics.median(times):.3f} s/it, best {min(times):.3f} s/it")


if __name__ == "__main__":
    main()
