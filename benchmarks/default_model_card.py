"""The default model's figures for its model card, on held-out synthetic sets of a seed no model trains on.

    python benchmarks/default_model_card.py                                   # the embedded model
    python benchmarks/default_model_card.py --model out/default_model/model_final.pth --model OLD_DEFAULT.pth
    python benchmarks/default_model_card.py --flip                            # with the test-time flip

For every model: its file size, parameters and CPU time on a 512 x 512 photo (the astronaut; median
of 7 after 2 warm-up runs, this process's torch threads); then on two held-out sets of --count
256 px images of seed --seed (written once into --data, resumable), one of the plain look, one
of the photo look over scikit-image's backgrounds, and one of close-ups (the photo look with
people 1 to 2.5 image heights tall, cut by the frame): GPS, GPSm, IOU and box AP (our evaluator, the
synthetic body's surface), GPS AP50, and the fine-part mIoU over every pixel (detections above 0.5
pasted into a part map, as the training evaluation does), with the left/right (and torso
back/front) confusion of every part pair. Training uses seeds 0 (stages 1 to 3), 6 and 8 (stage 4),
9 (the GPU config) and 1 (held-out evaluations during training), so the default seed 2026 is unseen.
"""
from __future__ import annotations

import argparse
import importlib.resources
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from densepose_torch import DensePoseError, Predictor, load_model
from densepose_torch.definitions import PART_NAMES
from densepose_torch.evaluation.part_maps import left_right_confusion
from densepose_torch.evaluation.surface_names import resolve_surface
from densepose_torch.io.images import read_image
from densepose_torch.synthetic.dataset import SynthJob, write_dataset
from densepose_torch.training.evaluation import evaluate_predictions

# (name, look, backgrounds, person height range): the sets every model is measured on.
HELD_OUT_SETS = (("plain", "plain", None, None), ("photo", "photo", "scikit-image", None), ("close-up", "photo", "scikit-image", (1.0, 2.5)))


def held_out_sets(root: Path, seed: int, count: int) -> dict[str, Path]:
    sets = {}
    for name, look, backgrounds, person_height in HELD_OUT_SETS:
        out = root / f"seed{seed}-{name}"
        write_dataset(SynthJob(out=out, seed=seed, size=256, backgrounds=backgrounds, look=look, person_height=person_height),
                      count, progress=False)
        sets[name] = out
    return sets


def cpu_seconds(predictor: Predictor, image: np.ndarray) -> float:
    for _ in range(2):
        predictor(image)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        predictor(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="checkpoint or 'default' (repeatable; default: the embedded model)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--data", type=Path, default=Path("out/card"), help="where the held-out sets are written")
    parser.add_argument("--flip", action="store_true", help="measure with the test-time flip (Predictor(flip=True), --flip)")
    args = parser.parse_args()
    sets = held_out_sets(args.data, args.seed, args.count)
    surface = resolve_surface("synthetic")
    astronaut = read_image(importlib.resources.files("densepose_torch.assets") / "astronaut.png")
    print(f"held-out sets: {args.count} images of seed {args.seed}, 256 px; torch threads {torch.get_num_threads()}")
    for name in args.model or ["default"]:
        try:
            model = load_model(None if name == "default" else name)
        except DensePoseError as error:
            raise SystemExit(f"default_model_card: error: {error}") from None
        size = Path(name).stat().st_size / 2**20 if Path(name).is_file() else float("nan")
        parameters = sum(p.numel() for p in model.parameters())
        seconds = cpu_seconds(Predictor(model, min_score=0.8, flip=args.flip), astronaut)
        flip = " with the test-time flip" if args.flip else ""
        print(f"\nmodel {name}{flip}: {size:.1f} MiB file, {parameters / 1e6:.2f} M parameters, {seconds:.3f} s on a 512 px photo")
        predictor = Predictor(model, flip=args.flip)
        for set_name, folder in sets.items():
            evaluation = evaluate_predictions(predictor, folder / "annotations.json", folder / "images", surface, progress=False)
            figures = evaluation["summary"]
            gps50 = evaluation["metrics"]["gps"]["AP50"]
            print(f"  {set_name:8s}: GPS AP {figures['gps']:.1f}  GPS AP50 {gps50:.1f}  GPSm AP {figures['gpsm']:.1f}  "
                  f"IOU AP {figures['iou']:.1f}  box AP {figures['box']:.1f}  fine-part mIoU {figures['part_miou']:.3f}")
            pairs = left_right_confusion(np.asarray(evaluation["confusion"]))
            print("         mirror confusions: " + ", ".join(
                f"{PART_NAMES[a]} / {PART_NAMES[b]} {share:.1%}" for a, b, share in pairs))


if __name__ == "__main__":
    main()
