"""What the fast mode (precision="fast"), or an exported model, costs in accuracy, against the exact path.

    python benchmarks/bench_precision.py                          # all three sets below
    python benchmarks/bench_precision.py --sets synthetic --scenes 150
    densepose export default --int8 -o int8.xml && python benchmarks/bench_precision.py --candidate int8.xml
    densepose export run/model_final.pth --int8 -o run.xml && \
        python benchmarks/bench_precision.py --model run/model_final.pth --candidate run.xml --sets synthetic

With --candidate, the file (an export of the embedded default model: int8 OpenVINO IR or an ONNX
graph) takes the fast mode's place, and every set runs the default model: the golden images, the
real photo and the synthetic scenes. --model puts another checkpoint in the default model's place
(a candidate default model, before it is shipped).

Sets:
- golden: detectron2's golden images with the golden (random) weights of the five reference
  architectures;
- synthetic: scenes from `densepose synth` (a seed the default model never trained on) with the
  embedded default model, the only trained model here;
- photos: the real street photo in ../shared/data, with the golden weights and the default model.

People are the detections above --min-score (0.8, as `densepose predict`). A person of the exact
path is matched by the fast mode's detection of highest box IoU, if that IoU is >= 0.9 (each
detection matched once), whatever its score: a person scoring 0.81 in one mode and 0.79 in the
other is the same person found, and the score difference column shows such flips. "extra" counts
the fast mode's people with no exact detection at IoU >= 0.9, and "at IoU 0.8" is the matched share
when 0.8 is enough (a box moved by a few pixels rather than lost). For scale, the synthetic set also
gets a reference row: the exact path against itself on the same images with +-1 grey level of
random noise per pixel (less than JPEG re-encoding changes), i.e. how many of the model's own
detections are that fragile. Charts are compared on the
exact path's boxes (the first --charts people of each image, matched or not), both modes drawing
on the same box so that box jitter is not counted as label change: the share of pixels with the
same part, and the U/V difference where they agree. Random-weight heads put raw
U/V far outside [0, 1] (up to ~180), so for the golden weights the U/V error is given relative
to the case's U/V scale (99th percentile of |U|, |V| on body pixels): for a trained model, whose
U/V lie in [0, 1], that is the absolute error.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from densepose_torch import Predictor, load_model
from densepose_torch.modeling.fast import fast_dtype
from densepose_torch.ops.boxes import box_iou

GOLDEN_ARCHITECTURES = ("R_50_FPN_s1x_legacy", "R_50_FPN_s1x", "R_50_FPN_DL_WC2M_s1x", "R_101_FPN_WC1_s1x", "R_50_FPN_DL_WC1M_3x_Atop10P_CA")
MATCH_IOU = 0.9
LOOSE_MATCH_IOU = 0.8  # the second, looser column
SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass
class Agreement:
    """Sums over the images of one set and model."""

    people: int = 0
    matched: int = 0
    loosely_matched: int = 0  # at LOOSE_MATCH_IOU
    extra: int = 0  # fast-mode people with no exact partner
    score_differences: list = field(default_factory=list)
    same_label: list = field(default_factory=list)
    uv_errors: list = field(default_factory=list)
    uv_scale: list = field(default_factory=list)
    exact_seconds: float = 0.0
    fast_seconds: float = 0.0

    def add(self, exact: Predictor, fast: Predictor, image: np.ndarray, min_score: float, charts_of: int) -> None:
        start = time.perf_counter()
        a = exact(image)
        middle = time.perf_counter()
        b = fast(image)
        self.exact_seconds += middle - start
        self.fast_seconds += time.perf_counter() - middle
        people, found = a.above(min_score), b.above(min_score)
        self.people += len(people)
        pairs = match(people.boxes, b.boxes)
        self.matched += len(pairs)
        self.loosely_matched += len(match(people.boxes, b.boxes, LOOSE_MATCH_IOU))
        self.score_differences += [abs(float(people.scores[i]) - float(b.scores[j])) for i, j in pairs]
        self.extra += len(found) - len(match(found.boxes, a.boxes))
        chosen = list(range(min(len(people), charts_of)))
        if not chosen:
            return
        reference = exact.predict_boxes(image, people.boxes[chosen])
        quick = fast.predict_boxes(image, people.boxes[chosen])
        for x, y in zip(reference.charts, quick.charts):
            same = x.labels == y.labels
            self.same_label.append(same.ravel())
            self.uv_errors.append(np.abs(x.uv - y.uv)[:, same & (x.labels > 0)].ravel())
            self.uv_scale.append(np.abs(x.uv[:, x.labels > 0]).ravel())

    def row(self, name: str, images: int, relative_uv: bool, timed: bool = True) -> str:
        labels = np.concatenate(self.same_label).mean() if self.same_label else float("nan")
        errors = np.concatenate(self.uv_errors) if self.uv_errors else np.zeros(1)
        scale = np.percentile(np.concatenate(self.uv_scale), 99) if relative_uv and self.uv_scale else 1.0
        scores = np.asarray(self.score_differences) if self.score_differences else np.full(1, np.nan)
        matched = self.matched / self.people if self.people else float("nan")
        loosely = self.loosely_matched / self.people if self.people else float("nan")
        return (f"| {name} | {images} | {self.people} | {matched:.1%} | {loosely:.1%} | {self.extra} | {np.median(scores):.1e} / {scores.max():.1e} "
                f"| {labels:.2%} | {np.median(errors) / scale:.4f} / {np.percentile(errors, 95) / scale:.4f} "
                f"| {f'{self.exact_seconds / max(self.fast_seconds, 1e-9):.2f}x' if timed else '-'} |")


def match(people: np.ndarray, candidates: np.ndarray, threshold: float = MATCH_IOU) -> list[tuple[int, int]]:
    """(person index, candidate index) pairs of boxes: each person, best first, takes the unmatched
    candidate of highest IoU if that IoU is >= `threshold`."""
    if not len(people) or not len(candidates):
        return []
    iou = box_iou(torch.from_numpy(people), torch.from_numpy(candidates)).numpy()
    pairs, taken = [], set()
    for i in range(len(people)):
        order = [j for j in np.argsort(-iou[i]) if j not in taken]
        if order and iou[i, order[0]] >= threshold:
            pairs.append((i, int(order[0])))
            taken.add(int(order[0]))
    return pairs


class NoisyInput:
    """A predictor that adds -1, 0 or +1 grey level of random noise to every pixel, then runs `inner`."""

    def __init__(self, inner: Predictor, seed: int = 0):
        self.inner, self.generator = inner, np.random.default_rng(seed)

    def _noisy(self, image: np.ndarray) -> np.ndarray:
        noise = self.generator.integers(-1, 2, image.shape)
        return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    def __call__(self, image: np.ndarray):
        return self.inner(self._noisy(image))

    def predict_boxes(self, image: np.ndarray, boxes: np.ndarray):
        return self.inner.predict_boxes(self._noisy(image), boxes)


def golden_checkpoint(golden: Path, name: str, folder: Path) -> Path:
    sys.path.insert(0, str(golden))
    from make_weights import make_state_dict  # the generator detectron2's references were made with

    state = make_state_dict(json.loads((golden / "keys" / f"{name}.json").read_text()), 0, dict(np.load(golden / "overrides" / f"{name}.npz")))
    path = folder / f"{name}.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "golden weights"}))
    return path


def rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def predictors(model, warm_up: np.ndarray, candidate: Path | None = None) -> tuple[Predictor, Predictor]:
    """Exact and fast (or `candidate` file) predictors of `model` keeping every detection the
    model makes, each run once on `warm_up` (so that the timings leave out first-call set-up)."""
    pair = Predictor(model), (Predictor(candidate) if candidate else Predictor(model, precision="fast"))
    for predictor in pair:
        predictor(warm_up)
    return pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["golden", "synthetic", "photos"], choices=["golden", "synthetic", "photos"])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared reference folder (golden/, data/)")
    parser.add_argument("--scenes", type=int, default=100, help="synthetic scenes (default 100)")
    parser.add_argument("--seed", type=int, default=1234, help="synthetic seed (default 1234; the default model trained on seed 0 and was validated on seed 1)")
    parser.add_argument("--min-score", type=float, default=0.8)
    parser.add_argument("--charts", type=int, default=20, help="compare the charts of at most N matched people per image")
    parser.add_argument("--candidate", type=Path, help="an exported file of the default model to compare instead of the fast mode")
    parser.add_argument("--model", help="checkpoint in the default model's place (default: the embedded model)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fast mode in {fast_dtype(torch.device('cpu'))}")
    print("\n| set, model | images | people | matched | at IoU 0.8 | extra | score diff median / max | labels agree | U/V error median / p95 | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        golden = args.shared / "golden"
        warm_up = rgb(golden / "images" / "astronaut.png")
        photo = rgb(args.shared / "data" / "demo_im.jpg") if "photos" in args.sets else None
        default = load_model(args.model)
        if args.candidate and "golden" in args.sets:
            agreement = Agreement()
            exact, candidate = predictors(default, warm_up, args.candidate)
            for image in ("astronaut", "noise"):
                agreement.add(exact, candidate, rgb(golden / "images" / f"{image}.png"), args.min_score, args.charts)
            print(agreement.row(f"golden images, default model vs {args.candidate.name}", 2, relative_uv=False), flush=True)
        if not args.candidate and ("golden" in args.sets or "photos" in args.sets):
            for name in GOLDEN_ARCHITECTURES:
                exact, fast = predictors(load_model(golden_checkpoint(golden, name, Path(folder))), warm_up)
                if "golden" in args.sets:
                    agreement = Agreement()
                    for image in ("astronaut", "noise"):
                        agreement.add(exact, fast, rgb(golden / "images" / f"{image}.png"), args.min_score, args.charts)
                    print(agreement.row(f"golden images, {name} (random weights)", 2, relative_uv=True), flush=True)
                if photo is not None:
                    agreement = Agreement()
                    agreement.add(exact, fast, photo, args.min_score, args.charts)
                    print(agreement.row(f"real photo, {name} (random weights)", 1, relative_uv=True), flush=True)
        if photo is not None:
            agreement = Agreement()
            agreement.add(*predictors(default, warm_up, args.candidate), photo, args.min_score, args.charts)
            print(agreement.row("real photo, default model", 1, relative_uv=False), flush=True)
        if "synthetic" in args.sets:
            from densepose_torch.synthetic.dataset import SynthJob, write_dataset

            scenes = Path(folder) / "synthetic"
            write_dataset(SynthJob(out=scenes, seed=args.seed, size=512), args.scenes, workers=1, progress=False)
            agreement, reference = Agreement(), Agreement()
            exact, fast = predictors(default, warm_up, args.candidate)
            noisy = NoisyInput(exact)
            for path in sorted((scenes / "images").glob("*.jpg")):
                agreement.add(exact, fast, rgb(path), args.min_score, args.charts)
                reference.add(exact, noisy, rgb(path), args.min_score, args.charts)
            print(agreement.row(f"synthetic scenes (seed {args.seed}), default model", args.scenes, relative_uv=False), flush=True)
            print(reference.row("reference: the exact path on the same scenes with +-1 grey level noise", args.scenes,
                                relative_uv=False, timed=False), flush=True)


if __name__ == "__main__":
    main()
