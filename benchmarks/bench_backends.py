"""Seconds per image on every backend, in one run: exact PyTorch, the fast mode, the exported
graph on ONNX Runtime and OpenVINO in float32, and the int8 export (OpenVINO IR).

    python benchmarks/bench_backends.py                                  # R_50_FPN_s1x, 1 and 5 people, 800 px
    python benchmarks/bench_backends.py --models R_50_FPN_s1x default --people 1 --repeat 5

Weights are bench_inference.py's calibrated random ones (the zoo's weights cannot be downloaded
here; speed does not depend on their values), with exactly K detections per image; "default" is
the embedded model on the same image. The int8 models are calibrated on the test image and 16
synthetic scenes. Backends run in alternating rounds; each figure is the median over rounds.
Accuracy of int8 is benchmarks/bench_precision.py's business (--candidate int8).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import random_model, test_image  # noqa: E402

from densepose_torch import Predictor, load_model  # noqa: E402
from densepose_torch.errors import DensePoseError  # noqa: E402
from densepose_torch.export import export_onnx  # noqa: E402
from densepose_torch.export.quantize import calibration_images, quantize  # noqa: E402

BACKENDS = ("exact", "fast", "onnxruntime fp32", "openvino fp32", "openvino int8")


def predictors(model, rgb: np.ndarray, folder: Path, chosen: list[str], device: str = "cpu") -> dict[str, Predictor]:
    exact = Predictor(model, device=device)
    calibration = [rgb, *calibration_images(None, 16)]
    made: dict[str, Predictor] = {}
    for backend in chosen:
        if backend == "exact":
            made[backend] = exact
        elif backend == "fast":
            made[backend] = Predictor(model, precision="fast", device=device)
        elif backend.endswith("fp32"):
            runtime = backend.split()[0]  # ONNX Runtime runs on the GPU too (onnxruntime-gpu), OpenVINO on the CPU
            try:
                made[backend] = Predictor(export_onnx(model, folder / "model.onnx"), backend=runtime,
                                          device=device if runtime == "onnxruntime" else "cpu")
            except DensePoseError as error:  # e.g. an onnxruntime without the CUDA provider
                print(f"# {backend} left out: {error}")
        else:
            path = folder / "int8.xml"
            quantize(model, path, calibration, lambda image: exact.preprocess(image).numpy())
            made[backend] = Predictor(path)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["R_50_FPN_s1x"])
    parser.add_argument("--people", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: exact, fast and ONNX Runtime run there, OpenVINO on the CPU")
    args = parser.parse_args()
    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu
    print(f"# {where}, torch {torch.__version__}")
    rgb = test_image(args.size)
    for name in args.models:
        for people in args.people if name != "default" else [0]:
            model = load_model() if name == "default" else random_model(name, people, rgb)
            with tempfile.TemporaryDirectory() as folder:
                chosen = predictors(model, rgb, Path(folder), args.backends, args.device)
                times: dict[str, list[float]] = {backend: [] for backend in chosen}
                found: dict[str, int] = {}
                for predictor in chosen.values():
                    predictor(rgb)  # warm-up: first-call set-up of oneDNN and the runtimes
                for _ in range(args.repeat):
                    for backend, predictor in chosen.items():
                        start = time.perf_counter()
                        found[backend] = len(predictor(rgb))  # results come back as numpy: the GPU has finished
                        times[backend].append(time.perf_counter() - start)
            label = f"{name}, {people} people" if name != "default" else "default model, astronaut-size test image"
            print(f"\n## {label}, {args.size} px\n")
            print("| backend | people found | s / image | speed-up over exact |")
            print("|---|---|---|---|")
            exact = statistics.median(times["exact"]) if "exact" in times else None
            for backend, values in times.items():
                median = statistics.median(values)
                speed_up = f"{exact / median:.2f}x" if exact else "-"
                print(f"| {backend} | {found[backend]} | {median:.3f} | {speed_up} |")


if __name__ == "__main__":
    main()
