"""Speed of the synthetic data engine: images per second at a given size.

    python benchmarks/bench_synth.py                 # 512 px, 40 images, 1 and 2 processes
    python benchmarks/bench_synth.py --size 256 --count 100 --workers 1 2 4

Prints the rendering rate (SceneGenerator.render alone, one process) and the end-to-end rate of
`densepose synth` (render, annotate, write JPEG + dense npz + JSON) for each worker count.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from densepose_torch.synthetic import SceneGenerator, SynthJob, write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"cpus available: {len(os.sched_getaffinity(0))}, size {args.size}, {args.count} images")

    generator = SceneGenerator(size=args.size)
    generator.render(0)  # warm-up
    start = time.perf_counter()
    persons = 0
    for seed in range(1, args.count + 1):
        persons += generator.render(seed).num_persons
    elapsed = time.perf_counter() - start
    print(f"render only, 1 process: {args.count / elapsed:.2f} images/s ({persons / args.count:.2f} people per image)")

    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            job = SynthJob(out=Path(tmp) / "synth", seed=0, size=args.size)
            start = time.perf_counter()
            write_dataset(job, args.count, workers=workers, progress=False)
            elapsed = time.perf_counter() - start
        print(f"densepose synth end to end, {workers} worker(s): {args.count / elapsed:.2f} images/s")


if __name__ == "__main__":
    main()
