"""Throughput of `densepose predict --ray` with 1 and 2 actors on this machine, against one local process.

    python benchmarks/bench_ray.py                        # 60 synthetic 512 px photos, the embedded model
    python benchmarks/bench_ray.py --images 200 --model R_50_FPN_s1x --rounds 3

Every run is the real command in a child process, writing npz files into a fresh folder. Rows:
- local, 1 thread and 2 threads: one process (`densepose predict`);
- ray, 1 actor x 1 CPU and 2 actors x 1 CPU: a local Ray instance (`--ray --ray-actors N`).
images/s counts the prediction and writing only: for local runs the time to the last image (the
wall time minus the model load, measured by a run on one image); for Ray runs the summary's own
figure, from the first unit handed out to the last result (actor start and model load included,
Ray's start-up excluded). Scaling efficiency = (2-actor images/s) / (2 x 1-actor images/s). The
median of --rounds rounds, the variants alternating within a round.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = (("local, 1 thread", [], 1), ("local, 2 threads", [], 2),
            ("ray, 1 actor x 1 CPU", ["--ray", "--ray-actors", "1"], None),
            ("ray, 2 actors x 1 CPU", ["--ray", "--ray-actors", "2"], None))


def _run(inputs: Path, out: Path, extra: list[str], threads: int | None, model: str) -> tuple[float, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "densepose_torch", "predict", str(inputs), "-o", str(out), "--outputs", "npz",
                           "--model", model, *extra], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_ray: error: {done.stderr.strip().splitlines()[-1]}")
    return seconds, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from densepose_torch.io.images import write_picture
    from densepose_torch.synthetic.scene import SceneGenerator

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs, one = root / "images", root / "one"
        inputs.mkdir()
        one.mkdir()
        generator = SceneGenerator(args.size)
        for k in range(args.images):
            write_picture(inputs / f"{k:05d}.jpg", generator.render((2024, k)).image)
        (one / "00000.jpg").write_bytes((inputs / "00000.jpg").read_bytes())
        rates: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
        for round_ in range(args.rounds):
            for variant, (name, extra, threads) in enumerate(VARIANTS):
                out = root / f"out_{round_}_{variant}"
                if extra:
                    _, stderr = _run(inputs, out, extra, threads, args.model)
                    match = re.search(r"([0-9.]+) inputs/s", stderr)
                    rates[name].append(float(match.group(1)))
                else:
                    setup, _ = _run(one, root / f"setup_{round_}_{variant}", [], threads, args.model)
                    total, _ = _run(inputs, out, [], threads, args.model)
                    rates[name].append((args.images - 1) / max(total - setup, 1e-6))
    print(f"{args.images} images {args.size} px, model {args.model}, {os.cpu_count()} CPUs, median of {args.rounds} rounds")
    print(f"{'variant':28s} {'images/s':>9s}")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, rate in medians.items():
        print(f"{name:28s} {rate:9.2f}")
    one_actor, two_actors = medians[VARIANTS[2][0]], medians[VARIANTS[3][0]]
    print(f"scaling efficiency, 2 actors over 1: {two_actors / (2 * one_actor):.0%}")


if __name__ == "__main__":
    main()
