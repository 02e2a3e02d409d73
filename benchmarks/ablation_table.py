"""The ablation table of configs/ablation/: held-out GPS AP, GPSm AP, part mIoU and box AP of each
row, the wall-clock time of its command, as a markdown table and a bar chart.

    python benchmarks/ablation_table.py --runs out/ablation --png docs/images/ablation.png

Each row's figures come from its run (APs in percent as the evaluator reports them, part mIoU
converted to percent): the final "eval" entry of OUTPUT/metrics.jsonl (rows trained
by `densepose train`) or OUTPUT/evaluation.json (the fully convolutional rows, made by
`--eval-only --teacher`). Reruns with other seeds in RUNS/ROW_seedN (e.g. `densepose train
configs/ablation/region.yaml seed=1 output=out/ablation/region_seed1`) join their row: the table
then gives the mean +- half the range over the seeds, and the chart the mean with the range.
Times come from RUNS/times/ROW.txt ("exit-code seconds"), written by whoever ran the commands
(the table in docs/training.md says how they were run).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROWS = (
    ("fcn", "fully convolutional (whole image; region-based boxes)"),
    ("region", "region-based DensePose R-CNN"),
    ("distillation", "+ distillation (teacher's dense labels)"),
    ("cascade", "+ keypoint cascade"),
)
FIGURES = (("gps", "GPS AP"), ("gpsm", "GPSm AP"), ("part_miou", "part mIoU"), ("box", "box AP"))
PERCENT = {"part_miou"}  # the evaluator reports APs in percent and the mIoU as a fraction: all in percent here
COLOURS = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214))  # BGR


def row_summary(runs: Path, row: str) -> dict | None:
    folder = runs / row
    evaluation = folder / "evaluation.json"
    if evaluation.is_file():
        return _percent(json.loads(evaluation.read_text())["summary"])
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        return None
    evals = [json.loads(line)["eval"] for line in metrics.read_text().splitlines() if line.strip() and '"eval"' in line]
    return _percent(evals[-1]) if evals else None


def _percent(summary: dict) -> dict:
    return {k: v * 100 if k in PERCENT and isinstance(v, float) else v for k, v in summary.items()}


def step_time(runs: Path, row: str) -> str:
    """Mean seconds per training iteration of the student (from its metrics log)."""
    metrics = runs / row / "metrics.jsonl"
    if not metrics.is_file():
        return "-"
    times = [json.loads(line)["time"] for line in metrics.read_text().splitlines() if '"time"' in line]
    return f"{sum(times) / len(times):.2f} s" if times else "-"


def row_time(runs: Path, row: str) -> str:
    path = runs / "times" / f"{row}.txt"
    if not path.is_file():
        return "-"
    code, seconds = path.read_text().split()
    return f"{int(seconds) / 60:.1f} min" + ("" if code == "0" else f" (exit {code})")


def seed_summaries(runs: Path, row: str) -> list[dict]:
    """The figures of the row's run and of its reruns with other seeds (RUNS/ROW_seedN)."""
    folders = [row] + sorted(p.name for p in runs.glob(f"{row}_seed*") if p.is_dir())
    return [s for s in (row_summary(runs, folder) for folder in folders) if s is not None]


def combine(summaries: list[dict]) -> tuple[dict, dict, dict]:
    """Mean, minimum and maximum of each figure over the seeds."""
    stats = [{}, {}, {}]
    for key, _ in FIGURES:
        values = [s[key] for s in summaries if isinstance(s.get(key), float)]
        if values:
            for out, value in zip(stats, (float(np.mean(values)), min(values), max(values))):
                out[key] = value
    return stats[0], stats[1], stats[2]


def draw(table: list[tuple[str, dict, dict, dict]], path: Path) -> None:
    width, height, left, bottom, top = 900, 420, 60, 70, 40
    image = np.full((height, width, 3), 255, np.uint8)
    top_value = max(1e-6, max((s.get(k) or 0.0) for _, _, _, s in table for k, _ in FIGURES))
    scale = (height - top - bottom) / (top_value * 1.15)
    group = (width - left - 20) / len(table)
    bar = group / (len(FIGURES) + 1)
    cv2.line(image, (left, height - bottom), (width - 10, height - bottom), (0, 0, 0), 1)
    for g, (label, summary, low, high) in enumerate(table):
        x0 = left + g * group + bar / 2
        for k, (key, _) in enumerate(FIGURES):
            value = summary.get(key) or 0.0
            x = int(x0 + k * bar)
            y = int(height - bottom - value * scale)
            cv2.rectangle(image, (x, y), (int(x + bar * 0.9), height - bottom), COLOURS[k], -1)
            if high.get(key, value) > low.get(key, value):  # the range over seeds
                middle = int(x + bar * 0.45)
                y_low, y_high = (int(height - bottom - v[key] * scale) for v in (low, high))
                cv2.line(image, (middle, y_low), (middle, y_high), (0, 0, 0), 1)
                for end in (y_low, y_high):
                    cv2.line(image, (middle - 3, end), (middle + 3, end), (0, 0, 0), 1)
                y = min(y, y_high) - 3
            cv2.putText(image, f"{value:.2f}", (x - 2, y - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, label, (int(x0), height - bottom + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (_, name) in enumerate(FIGURES):
        x = left + k * 170
        cv2.rectangle(image, (x, height - 30), (x + 14, height - 16), COLOURS[k], -1)
        cv2.putText(image, name, (x + 20, height - 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    title = "held-out synthetic set: ablation of configs/ablation/ (mean over seeds; whiskers: their range)"
    cv2.putText(image, title, (left, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("out/ablation"))
    parser.add_argument("--png", type=Path, help="also draw the figures as a bar chart")
    parser.add_argument("--extra", action="append", default=[], metavar="FOLDER=LABEL",
                        help="also list the run in RUNS/FOLDER (e.g. a row trained with a command-line override)")
    args = parser.parse_args()
    rows = list(ROWS)
    for extra in args.extra:
        folder, sep, label = extra.partition("=")
        if not sep or not folder or not label:
            raise SystemExit(f"ablation_table: error: --extra takes FOLDER=LABEL, got {extra!r}")
        rows.append((folder, label))
    lines = ["| row | seeds | GPS AP | GPSm AP | part mIoU (%) | box AP | s / iteration | wall time |", "|---|---|---|---|---|---|---|---|"]
    drawn = []
    for row, label in rows:
        summaries = seed_summaries(args.runs, row)
        if not summaries:
            lines.append(f"| {label} | 0 | not run | | | | | {row_time(args.runs, row)} |")
            continue
        mean, low, high = combine(summaries)
        cells = []
        for key, _ in FIGURES:
            if key not in mean:
                cells.append("-")
            elif len(summaries) > 1:
                cells.append(f"{mean[key]:.2f} ± {(high[key] - low[key]) / 2:.2f}")
            else:
                cells.append(f"{mean[key]:.2f}")
        times = f"{step_time(args.runs, row)} | {row_time(args.runs, row)}"
        lines.append(f"| {label} | {len(summaries)} | " + " | ".join(cells) + f" | {times} |")
        drawn.append((row, mean, low, high))
    print("\n".join(lines))
    if args.png and drawn:
        draw(drawn, args.png)
        print(f"chart: {args.png}")


if __name__ == "__main__":
    main()
