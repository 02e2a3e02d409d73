"""Inference speed, stage by stage.

    python benchmarks/bench_inference.py --model R_50_FPN_s1x --size 512 --detections 100 --precision fp32
    python benchmarks/bench_inference.py --model R_50_FPN_s1x_legacy --detections 1 5 100 --precision fp32 bf16

Prints, per stage (preprocess, backbone+FPN, RPN, box head, DensePose head, post-processing),
the median time, the FLOPs counted by torch's flop counter (convolutions and matrix products;
elementwise work is not counted), the achieved GFLOP/s, and images/s of the whole predictor.
Weights: a zoo name runs on random weights of that architecture (He-initialised, box classifier
biased to "person" so that every proposal can become a detection, like the golden checkpoints);
pass --checkpoint to time real weights. The number of detections reaching the DensePose head is
fixed with the model's detections-per-image limit.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from densepose_torch import Predictor, get_zoo_model, load_model
from densepose_torch.modeling import build_model
from densepose_torch.modeling.layers import FrozenBatchNorm2d
from densepose_torch.postprocessing import rescale_detections, to_result


def random_model(name: str, detections: int, image: np.ndarray):
    """Random weights whose FrozenBN statistics are calibrated on `image` (each layer normalises
    what it actually receives), so activations stay well scaled through the network."""
    config = dataclasses.replace(get_zoo_model(name).architecture, detections_per_image=detections)
    model = build_model(config, name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("weight") and tensor.dim() >= 2:
                fan_in = tensor[0].numel() if "_lowres" not in key else tensor.shape[0] * tensor[0, 0].numel() // 4
                tensor.normal_(0, math.sqrt(2.0 / fan_in) * (0.1 if "deltas" in key or "bbox_pred" in key else 1.0), generator=generator)
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([4.0, -4.0]))

        def calibrate(norm, inputs):
            x = inputs[0]
            norm.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            norm.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

        hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
        Predictor(model)(image)
        for hook in hooks:
            hook.remove()
    return model


def test_image(size: int) -> np.ndarray:
    """A smooth synthetic photo-like image (gradients and blobs), deterministic."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([np.sin(6 * x + 2 * y), np.cos(5 * y - 3 * x), np.sin(9 * x * y)], axis=2)
    return ((image + 1) * 127.5).astype(np.uint8)


def run_stages(predictor: Predictor, rgb: np.ndarray) -> dict[str, float]:
    """Seconds per stage of one image, stage by stage (synchronising the device between them)."""
    model = predictor.model
    times = {}

    def timed(stage, fn):
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        value = fn()
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        times[stage] = time.perf_counter() - start
        return value

    with torch.inference_mode():
        image = timed("preprocess", lambda: predictor.preprocess(rgb).to(predictor.device))
        batch, sizes = model.batch_images([image])
        features = timed("backbone+FPN", lambda: model.backbone(batch))
        proposals = timed("RPN", lambda: [p for p, _ in model.proposal_generator(features, sizes)])
        boxes, scores = timed("box head", lambda: model.roi_heads.detect(features, proposals, sizes)[0])
        dtype = torch.bfloat16 if predictor.precision == "bf16" else None
        outputs = timed("DensePose head", lambda: model.roi_heads.densepose(features, [boxes], dtype))
        from densepose_torch.modeling import RawDetections

        raw = RawDetections(boxes, scores, outputs)
        timed("post-processing", lambda: to_result(rescale_detections(raw, sizes[0], rgb.shape[:2]), rgb.shape[:2], exact=predictor.precision == "fp32"))
    times["detections"] = len(boxes)
    return times


def count_flops(predictor: Predictor, rgb: np.ndarray) -> dict[str, int]:
    model = predictor.model
    flops = {}
    with torch.inference_mode():
        image = predictor.preprocess(rgb).to(predictor.device)
        batch, sizes = model.batch_images([image])
        for stage, fn in (
            ("backbone+FPN", lambda: model.backbone(batch)),
        ):
            with FlopCounterMode(display=False) as counter:
                features = fn()
            flops[stage] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            proposals = [p for p, _ in model.proposal_generator(features, sizes)]
        flops["RPN"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            boxes, _ = model.roi_heads.detect(features, proposals, sizes)[0]
        flops["box head"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            model.roi_heads.densepose(features, [boxes], torch.bfloat16 if predictor.precision == "bf16" else None)
        flops["DensePose head"] = counter.get_total_flops()
    flops["preprocess"] = flops["post-processing"] = 0
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="R_50_FPN_s1x", help="zoo architecture")
    parser.add_argument("--checkpoint", help="real weights (default: random weights of --model)")
    parser.add_argument("--size", type=int, default=512, help="square test image side in pixels")
    parser.add_argument("--detections", type=int, nargs="+", default=[1, 5, 100])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per setting (median reported)")
    args = parser.parse_args()

    torch.set_flush_denormal(True)
    rgb = test_image(args.size)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, device {args.device}, image {args.size}x{args.size}")
    stages = ("preprocess", "backbone+FPN", "RPN", "box head", "DensePose head", "post-processing")
    for detections in args.detections:
        for precision in args.precision:
            if args.checkpoint:
                model = load_model(args.checkpoint)
                model.config = dataclasses.replace(model.config, detections_per_image=detections)
                model.roi_heads.config = model.config
            else:
                model = random_model(args.model, detections, rgb)
            predictor = Predictor(model, device=args.device, precision=precision)
            run_stages(predictor, rgb)  # warm-up
            runs = [run_stages(predictor, rgb) for _ in range(args.repeat)]
            flops = count_flops(predictor, rgb)
            whole = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                predictor(rgb)
                if predictor.device.type == "cuda":
                    torch.cuda.synchronize()
                whole.append(time.perf_counter() - start)
            print(f"\n{args.model} {precision}, {runs[0]['detections']} detections")
            print(f"  {'stage':18s} {'time s':>8s} {'GFLOP':>9s} {'GFLOP/s':>9s}")
            for stage in stages:
                seconds = statistics.median(r[stage] for r in runs)
                gflop = flops[stage] / 1e9
                rate = f"{gflop / seconds:9.1f}" if gflop else f"{'-':>9s}"
                print(f"  {stage:18s} {seconds:8.3f} {gflop:9.1f} {rate}")
            total = statistics.median(whole)
            print(f"  {'whole predictor':18s} {total:8.3f} {sum(flops.values()) / 1e9:9.1f} {sum(flops.values()) / 1e9 / total:9.1f}   {1 / total:.3f} images/s")


if __name__ == "__main__":
    main()
