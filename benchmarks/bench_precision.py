"""What the fast path (precision="bf16") costs in accuracy, on detectron2's golden cases.

    python benchmarks/bench_precision.py [--cases ../shared/golden]

For every golden architecture and image, the exact and the fast predictor run on the same
detections (the fast path keeps the detector in float32, so it finds the same boxes; this is
checked), and the per-box charts are compared: the share of pixels with the same label, and the
U/V difference where labels agree. The golden checkpoints have random weights, whose raw U/V
reach far outside [0, 1] (up to ~180 for the V1ConvX heads), so the U/V error is also given
relative to each case's U/V scale (the 99th percentile of |U|, |V| on body pixels): for a
trained model, whose U/V lie in [0, 1], that is the absolute error.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from densepose_torch import Predictor, load_model

ARCHITECTURES = ("R_50_FPN_s1x_legacy", "R_50_FPN_s1x", "R_50_FPN_DL_WC2M_s1x", "R_101_FPN_WC1_s1x", "R_50_FPN_DL_WC1M_3x_Atop10P_CA")


def golden_checkpoint(golden: Path, name: str, folder: Path) -> Path:
    sys.path.insert(0, str(golden))
    from make_weights import make_state_dict  # the generator detectron2's references were made with

    state = make_state_dict(json.loads((golden / "keys" / f"{name}.json").read_text()), 0, dict(np.load(golden / "overrides" / f"{name}.npz")))
    path = folder / f"{name}.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "golden weights"}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "golden")
    parser.add_argument("--detections", type=int, default=20, help="compare the first N detections of each case")
    args = parser.parse_args()
    print(f"{'case':42s} {'labels':>7s} {'UV err med':>10s} {'p95':>7s} {'UV scale':>8s} {'rel med':>8s} {'rel p95':>8s} {'speed-up':>8s}")
    with tempfile.TemporaryDirectory() as folder:
        for name in ARCHITECTURES:
            checkpoint = golden_checkpoint(args.cases, name, Path(folder))
            exact = Predictor(load_model(checkpoint))
            fast = Predictor(load_model(checkpoint), precision="bf16")
            for image in ("astronaut", "noise"):
                bgr = cv2.imread(str(args.cases / "images" / f"{image}.png"))
                start = time.perf_counter()
                a = exact(bgr, channel_order="bgr")
                middle = time.perf_counter()
                b = fast(bgr, channel_order="bgr")
                end = time.perf_counter()
                assert np.array_equal(a.boxes, b.boxes), "the fast path must find the same people"
                same, errors, scale = [], [], []
                for x, y in list(zip(a.charts, b.charts))[: args.detections]:
                    agree = x.labels == y.labels
                    same.append(agree.ravel())
                    body = agree & (x.labels > 0)
                    errors.append(np.abs(x.uv - y.uv)[:, body].ravel())
                    scale.append(np.abs(x.uv[:, x.labels > 0]).ravel())
                err, uv_scale = np.concatenate(errors), np.percentile(np.concatenate(scale), 99)
                print(f"{name + ' ' + image:42s} {np.concatenate(same).mean():7.2%} {np.median(err):10.4f} {np.percentile(err, 95):7.3f} "
                      f"{uv_scale:8.2f} {np.median(err) / uv_scale:8.4f} {np.percentile(err, 95) / uv_scale:8.4f} {(middle - start) / (end - middle):7.2f}x")


if __name__ == "__main__":
    main()
