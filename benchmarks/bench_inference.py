"""Inference speed, stage by stage: the exact path, the fast mode and, for reference, the exact
path as it was before the fast-mode work, side by side in one run.

    python benchmarks/bench_inference.py                       # R_50_FPN_s1x, R_50_FPN_DL_s1x; 1, 5 and 2+30 people; 800 px
    python benchmarks/bench_inference.py --models R_50_FPN_s1x --scenarios 1 2 2+30 --repeat 5
    python benchmarks/bench_inference.py --device cuda --variants exact fast

Scenarios: "K" sends K detections to the DensePose head; "K+M" makes K+M detections of which
only K score above the threshold (M weak ones below it, as on a street photo): the exact and fast
predictors drop the M inside the box predictor, the "before" reference ran the head on all K+M
and filtered afterwards. "before" also runs with glibc's default malloc settings (a child process,
since malloc settings cannot be undone in a process; see densepose_torch/allocator.py).
Variants run in alternating rounds and each figure is the median over rounds.

Per stage: FLOPs (torch's flop counter: convolutions and matrix products, nominal counts),
seconds, and the achieved GFLOP/s as a share of this machine's peak, measured in the same run by a
large matrix product in float32 (for exact and before) and in the fast mode's dtype. oneDNN runs
some float32 3x3 convolutions as Winograd transforms, with fewer multiplications than the nominal
count, so a stage can show more than 100 %. Weights are random (He-initialised,
FrozenBN calibrated on the test image, box classifier scaled so that hundreds of proposals
pass the model's 0.05, like the golden checkpoints) but with distinct scores; --checkpoint times real weights.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from densepose_torch import Predictor, get_zoo_model, load_model
from densepose_torch.modeling import RawDetections, build_model
from densepose_torch.modeling.fast import fast_dtype
from densepose_torch.modeling.layers import FrozenBatchNorm2d
from densepose_torch.postprocessing import rescale_detections, to_result

STAGES = ("preprocess", "backbone+FPN", "RPN", "box head", "DensePose head", "post-processing")
VARIANTS = ("before", "exact", "fast")


@dataclasses.dataclass(frozen=True)
class Scenario:
    kept: int  # detections above the threshold
    weak: int  # detections below it

    @classmethod
    def parse(cls, text: str) -> "Scenario":
        kept, _, weak = text.partition("+")
        return cls(int(kept), int(weak or 0))

    def __str__(self) -> str:
        return f"{self.kept}+{self.weak}" if self.weak else str(self.kept)


def random_model(name: str, detections: int, image: np.ndarray, checkpoint: str | None = None):
    """Random weights whose FrozenBN statistics are calibrated on `image` (each layer normalises
    what it actually receives), so activations stay well scaled through the network, and whose
    person logit over the proposals has mean -2 and spread 2.5 (distinct scores, most proposals
    background, a few hundred above 0.05); or the checkpoint's weights. At most `detections`
    per image."""
    if checkpoint:
        model = load_model(checkpoint)
        model.config = dataclasses.replace(model.config, detections_per_image=detections)
        model.roi_heads.config = model.config
        return model
    config = dataclasses.replace(get_zoo_model(name).architecture, detections_per_image=detections)
    model = build_model(config, name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("weight") and tensor.dim() >= 2:
                fan_in = tensor[0].numel() if "_lowres" not in key else tensor.shape[0] * tensor[0, 0].numel() // 4
                tensor.normal_(0, math.sqrt(2.0 / fan_in) * (0.1 if "deltas" in key or "bbox_pred" in key else 1.0), generator=generator)
        classifier = model.roi_heads.box_predictor.cls_score
        box_features = []

        def calibrate(norm, inputs):
            x = inputs[0]
            norm.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            norm.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

        hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
        hooks.append(classifier.register_forward_pre_hook(lambda layer, inputs: box_features.append(inputs[0])))
        Predictor(model)(image)
        for hook in hooks:
            hook.remove()
        person_logit = box_features[0] @ (classifier.weight[0] - classifier.weight[1])
        classifier.weight.mul_(2.5 / person_logit.std())
        classifier.bias.copy_(torch.tensor([-2.0 - 2.5 * float(person_logit.mean() / person_logit.std()), 0.0]))
    return model


def test_image(size: int) -> np.ndarray:
    """A smooth synthetic photo-like image (gradients and blobs), deterministic."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([np.sin(6 * x + 2 * y), np.cos(5 * y - 3 * x), np.sin(9 * x * y)], axis=2)
    return ((image + 1) * 127.5).astype(np.uint8)


def threshold_for(predictor: Predictor, rgb: np.ndarray, scenario: Scenario) -> float | None:
    """A score threshold that keeps exactly `scenario.kept` of the detections (None: keep all)."""
    if not scenario.weak:
        return None
    scores = np.sort(predictor(rgb, min_score=0.0).scores)[::-1]
    if len(scores) < scenario.kept + scenario.weak:
        raise SystemExit(f"only {len(scores)} detections on the test image; fewer weak ones needed")
    return float(scores[scenario.kept - 1] + scores[scenario.kept]) / 2


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_stages(predictor: Predictor, rgb: np.ndarray, min_score: float | None, filter_after: bool) -> dict[str, float]:
    """Seconds per stage of one image (the device synchronised between stages) and the seconds
    of the whole predictor call. `filter_after`: the "before" way, the head sees every detection
    above the model's 0.05 and the threshold applies to the result."""
    model = predictor.model
    times: dict[str, float] = {}

    def timed(stage, fn):
        _synchronize(predictor.device)
        start = time.perf_counter()
        value = fn()
        _synchronize(predictor.device)
        times[stage] = time.perf_counter() - start
        return value

    threshold = None if filter_after else min_score
    with torch.inference_mode():
        image = timed("preprocess", lambda: predictor.preprocess(rgb))
        batch, sizes = model.backbone_input([image])
        features = timed("backbone+FPN", lambda: model.backbone(batch))
        proposals = timed("RPN", lambda: [p for p, _ in model.proposal_generator(features, sizes)])
        boxes, scores = timed("box head", lambda: model.roi_heads.detect(features, proposals, sizes, threshold)[0])
        outputs = timed("DensePose head", lambda: model.roi_heads.densepose(features, [boxes]))
        raw = RawDetections(boxes, scores, outputs)

        def post():
            result = to_result(rescale_detections(raw, sizes[0], rgb.shape[:2]), rgb.shape[:2], exact=predictor.precision == "exact")
            return result.select(result.scores > min_score) if filter_after and min_score is not None else result

        timed("post-processing", post)
    _synchronize(predictor.device)
    start = time.perf_counter()
    result = predictor(rgb, min_score=threshold)
    if filter_after and min_score is not None:
        result = result.select(result.scores > min_score)
    _synchronize(predictor.device)
    times["whole"] = time.perf_counter() - start
    times["kept"] = len(result)
    times["head"] = len(boxes)
    return times


def count_flops(predictor: Predictor, rgb: np.ndarray, min_score: float | None) -> dict[str, int]:
    model = predictor.model
    flops = {"preprocess": 0, "post-processing": 0}
    with torch.inference_mode():
        batch, sizes = model.backbone_input([predictor.preprocess(rgb)])
        with FlopCounterMode(display=False) as counter:
            features = model.backbone(batch)
        flops["backbone+FPN"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            proposals = [p for p, _ in model.proposal_generator(features, sizes)]
        flops["RPN"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            boxes, _ = model.roi_heads.detect(features, proposals, sizes, min_score)[0]
        flops["box head"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            model.roi_heads.densepose(features, [boxes])
        flops["DensePose head"] = counter.get_total_flops()
    return flops


def peak_gflops(dtype: torch.dtype, device: torch.device, size: int = 4096, repeat: int = 5) -> float:
    """This machine's practical peak: the best GFLOP/s of a size^3 matrix product, as torch.mm
    (MKL or oneDNN, cuBLAS) and as a 1x1 convolution (oneDNN, cuDNN), whichever is faster (MKL's
    float32 product runs well below oneDNN's on AMD CPUs)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    image = a.reshape(1, size, 64, size // 64)
    kernel = b.reshape(size, size, 1, 1)
    best = math.inf
    for product in (lambda: torch.mm(a, b), lambda: torch.nn.functional.conv2d(image, kernel)):
        for _ in range(repeat + 1):
            _synchronize(device)
            start = time.perf_counter()
            product()
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@dataclasses.dataclass
class Setting:
    """One variant of one model on one scenario, ready to time."""

    predictor: Predictor
    image: np.ndarray
    min_score: float | None
    filter_after: bool

    def run(self) -> dict[str, float]:
        return run_stages(self.predictor, self.image, self.min_score, self.filter_after)

    def flops(self) -> dict[str, int]:
        return count_flops(self.predictor, self.image, None if self.filter_after else self.min_score)


def prepare(args: argparse.Namespace, model_name: str, scenario: Scenario, variants: list[str]) -> dict[str, Setting]:
    """The variants' predictors on one model (same weights), each warmed up once."""
    rgb = test_image(args.size)
    model = random_model(model_name, scenario.kept + scenario.weak, rgb, args.checkpoint)
    exact = Predictor(model, device=args.device)
    settings = {}
    for variant in variants:
        predictor = Predictor(model, device=args.device, precision="fast") if variant == "fast" else exact
        # Each variant's own threshold: random weights rank the weak detections differently in
        # bfloat16, and each must keep exactly K.
        settings[variant] = Setting(predictor, rgb, threshold_for(predictor, rgb, scenario), variant == "before")
        settings[variant].run()  # warm-up
    return settings


def measure_before(args: argparse.Namespace, model_name: str, scenario: Scenario) -> dict:
    """One timed run of the "before" variant, in a child process with glibc's default malloc
    settings (MALLOC_MMAP_MAX_ in the environment keeps the package from changing them)."""
    command = [sys.executable, __file__, "--child", model_name, str(scenario), "--size", str(args.size), "--device", args.device]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    environment = dict(os.environ, MALLOC_MMAP_MAX_="65536")  # glibc's default value
    output = subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(model_name: str, scenario: Scenario, results: dict[str, dict], peaks: dict[str, float]) -> None:
    kept = ", ".join(f"{variant} {result['kept']:.0f}" for variant, result in results.items())
    head = ", ".join(f"{variant} {result['head']:.0f}" for variant, result in results.items())
    print(f"\n{model_name}, {scenario} detections (people kept: {kept}; boxes through the DensePose head: {head})")
    header = f"  {'stage':16s}" + "".join(f" {v + ' s':>9s} {'GFLOP':>6s} {'GFLOP/s':>8s} {'%peak':>6s}" for v in results)
    print(header)
    for stage in STAGES + ("whole",):
        row = f"  {stage:16s}"
        for variant, result in results.items():
            flops = sum(result["flops"].values()) if stage == "whole" else result["flops"].get(stage, 0)
            seconds = result[stage]
            if flops:
                rate = flops / 1e9 / seconds
                row += f" {seconds:9.3f} {flops / 1e9:6.1f} {rate:8.1f} {100 * rate / peaks[variant]:5.0f}%"
            else:
                row += f" {seconds:9.3f} {'-':>6s} {'-':>8s} {'-':>6s}"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["R_50_FPN_s1x", "R_50_FPN_DL_s1x"], help="zoo architectures")
    parser.add_argument("--checkpoint", help="real weights (default: random weights of each --models architecture)")
    parser.add_argument("--size", type=int, default=800, help="square test image side in pixels (default 800)")
    parser.add_argument("--scenarios", nargs="+", default=["1", "5", "2", "2+30"], help='"K" or "K+M" (see above)')
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per setting (medians reported)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_flush_denormal(True)

    if args.child:
        setting = prepare(args, args.child[0], Scenario.parse(args.child[1]), ["before"])["before"]
        print(json.dumps(setting.run() | {"flops": setting.flops()}))
        return

    device = torch.device(args.device)
    fast = fast_dtype(device)
    peaks = {"before": peak_gflops(torch.float32, device), "exact": 0.0, "fast": peak_gflops(fast, device)}
    peaks["exact"] = peaks["before"]
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, device {device}, image {args.size}x{args.size}")
    print(f"peak of a 4096^3 matrix product: float32 {peaks['exact']:.0f} GFLOP/s, {str(fast).replace('torch.', '')} {peaks['fast']:.0f} GFLOP/s")
    summary = []
    for model_name in args.models:
        for text in args.scenarios:
            scenario = Scenario.parse(text)
            local = [variant for variant in args.variants if variant != "before"]
            settings = prepare(args, model_name, scenario, local)
            rounds: dict[str, list[dict]] = {variant: [] for variant in args.variants}
            for _ in range(args.repeat):  # alternate the variants, round after round
                for variant in args.variants:
                    if variant == "before":
                        rounds[variant].append(measure_before(args, model_name, scenario))
                    else:
                        rounds[variant].append(settings[variant].run())
            results = {}
            for variant, runs in rounds.items():
                medians = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "flops"}
                flops = runs[0]["flops"] if variant == "before" else settings[variant].flops()
                results[variant] = medians | {"flops": flops}
            table(model_name, scenario, results, peaks)
            summary.append((model_name, str(scenario), {v: r["whole"] for v, r in results.items()}))
    print("\n| model | people | " + " | ".join(f"{v} s" for v in args.variants) + " |")
    print("|---|---|" + "---|" * len(args.variants))
    for model_name, scenario, whole in summary:
        print(f"| {model_name} | {scenario} | " + " | ".join(f"{whole[v]:.2f}" for v in args.variants) + " |")


if __name__ == "__main__":
    main()
