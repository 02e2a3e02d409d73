"""Memory and time of `densepose predict` on videos of growing length: frames stream through, so the
peak memory should not grow with the number of frames.

    python benchmarks/bench_video_memory.py --frames 100 400

For each length, a synthetic clip of that many frames (`densepose synth --video`, 512x512, 25 fps) is
predicted in a child process with the embedded model, people tracked, `--temporal centred`, per-frame
npz arrays, and the `--clip magicanimate` renders (the two-pass path); then once more without the clip
(the one-pass path). Printed per run: frames, seconds per frame, and the child's peak resident memory.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """Seconds taken and peak resident memory (MB) of a child process running `command`."""
    started = time.perf_counter()
    # getrusage(RUSAGE_CHILDREN) reports the largest peak among waited-for children so far, so each run
    # is measured from a fresh Python that runs it as its own child and prints that child's peak.
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    output = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - started, int(output.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 400], help="clip lengths (default 100 400)")
    parser.add_argument("--seed", type=int, default=5, help="of the synthetic clips")
    args = parser.parse_args()
    densepose = [sys.executable, "-m", "densepose_torch"]
    print("| frames | run | seconds per frame | peak memory, MB |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for count in args.frames:
            clips = Path(folder) / f"clips_{count}"
            subprocess.run([*densepose, "synth", "--video", "--count", "1", "--frames", str(count), "--seed", str(args.seed),
                            "--out", str(clips)], check=True, capture_output=True)
            video = clips / "clip_0000.mp4"
            runs = (("--clip magicanimate", ["--clip", "magicanimate"]), ("--render magicanimate", ["--render", "magicanimate"]))
            for index, (name, options) in enumerate(runs):
                out = Path(folder) / f"out_{count}_{index}"
                seconds, peak = peak_rss_mb([*densepose, "predict", str(video), "-o", str(out), "--outputs", "npz", *options])
                print(f"| {count} | {name} | {seconds / count:.3f} | {peak:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
