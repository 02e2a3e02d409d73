"""Throughput: images per second and peak memory of whole predictor calls at several batch sizes.

    python benchmarks/bench_throughput.py --device cuda                     # R_50_FPN_s1x, 800 px, batches 1, 8, 16
    python benchmarks/bench_throughput.py --device cuda --markdown out.md   # also write the table

Each setting runs one warm-up batch, then enough batches for --images images; the figure is
images / seconds over them (the device synchronised). Weights are random, as in
bench_inference.py, with --people detections per image (the DensePose head's load);
--checkpoint times real weights. Memory is the CUDA allocator's peak (torch.cuda.max_memory_allocated)
on a GPU, and the process's peak resident set on the CPU.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from bench_inference import random_model, test_image

from densepose_torch import Predictor


def images(size: int, count: int) -> list[np.ndarray]:
    """`count` different images of one size (so that they batch together on a GPU)."""
    base = test_image(size)
    return [np.roll(base, shift=17 * index, axis=1) for index in range(count)]


def measure(predictor: Predictor, batch: list[np.ndarray], total: int) -> tuple[float, float]:
    """(images per second, peak memory in MiB) of `predictor.batch` over `total` images."""
    device = predictor.device
    predictor.batch(batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    calls = max(1, total // len(batch))
    start = time.perf_counter()
    for _ in range(calls):
        predictor.batch(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        memory = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return calls * len(batch) / (time.perf_counter() - start), memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="R_50_FPN_s1x")
    parser.add_argument("--checkpoint", help="real weights (default: random weights of --model)")
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--people", type=int, default=2, help="detections per image reaching the DensePose head (default 2)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--precisions", nargs="+", default=["exact", "fast"], choices=["exact", "fast"])
    parser.add_argument("--images", type=int, default=64, help="images timed per setting (default 64)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    model = random_model(args.model, args.people, test_image(args.size), args.checkpoint)
    lines = [f"{args.model}, {args.size}x{args.size}, {args.people} people per image, {name}, torch {torch.__version__}", "",
             "| precision | batch | images/s | peak memory MiB |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for precision in args.precisions:
        predictor = Predictor(model, device=device, precision=precision)
        for size in args.batches:
            rate, memory = measure(predictor, images(args.size, size), max(args.images, size))
            line = f"| {precision} | {size} | {rate:.2f} | {memory:.0f} |"
            lines.append(line)
            print(line, flush=True)
        del predictor
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
