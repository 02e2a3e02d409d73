"""Per-frame accuracy and temporal stability of DensePose on synthetic clips with dense truth.

    densepose synth --video --count 20 --frames 50 --seed 424242 --out heldout_clips
    python benchmarks/video_flicker.py heldout_clips --model default --picture docs/images/video_flicker.png --picture-clip 6

For every clip (OUT/clip_NNNN/: frames, dense truth, annotations) the model runs on each frame in
order, people tracked (densepose_torch.video.Tracker), and the run reports, pooled over clips:
- fine-part mIoU of the full-image part maps against the truth, and GPS / box AP of the frames
  (the DensePose-COCO evaluator, synthetic body surface);
- the flicker rate and U/V jitter (densepose_torch.evaluation.temporal: pixels of consecutive
  frames paired through the true correspondences, i.e. after following the motion);
- identity switches: how often a true person's track id changes, on all clips and on the clips
  where no two people's true boxes ever overlap.
Each figure is given without temporal smoothing and with `--temporal centred` and `causal`
(densepose_torch.video.smoothing), on the same predictions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from densepose_torch import Predictor, load_model
from densepose_torch.definitions import NUM_PART_LABELS
from densepose_torch.evaluation import evaluate
from densepose_torch.evaluation.part_maps import part_confusion, part_miou
from densepose_torch.evaluation.surface_names import resolve_surface
from densepose_torch.evaluation.temporal import FlickerCounts, corresponding_pixels, identity_switches, track_of_people
from densepose_torch.io.coco_results import result_to_records
from densepose_torch.io.images import read_image, write_picture
from densepose_torch.results import DensePoseResult
from densepose_torch.synthetic.dataset import read_dense
from densepose_torch.video import Tracker
from densepose_torch.video.smoothing import TemporalSmoother


def people_overlap(truths) -> bool:
    """Whether two people's true boxes overlap in any frame (a tracker may then swap them)."""
    for truth in truths:
        boxes = []
        for person in np.unique(truth.instance[truth.instance > 0]):
            rows, cols = np.nonzero(truth.instance == person)
            boxes.append((cols.min(), rows.min(), cols.max(), rows.max()))
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1]):
                    return True
    return False


VARIANTS = ("off", "centred", "causal")


@dataclass
class Figures:
    """Sums over clips for one way of post-processing the tracked results."""

    confusion: np.ndarray = field(default_factory=lambda: np.zeros((NUM_PART_LABELS, NUM_PART_LABELS), np.int64))
    flicker: FlickerCounts = field(default_factory=FlickerCounts)
    records: list = field(default_factory=list)
    switches: int = 0
    switches_apart: int = 0
    seconds: float = 0.0  # smoothing time

    def add_clip(self, results: list[DensePoseResult], truths: list, image_ids: list[int], apart: bool) -> None:
        history = []
        previous = None
        for result, truth, image_id in zip(results, truths, image_ids):
            predicted = result.to_dense()
            self.confusion += part_confusion(predicted.I, truth.I)
            self.records += result_to_records(result, image_id)
            if previous is not None:
                self.flicker.add(corresponding_pixels(previous[0], truth), previous[0], truth, previous[1], predicted)
            previous = (truth, predicted)
            history.append(track_of_people(predicted, truth))
        clip_switches = identity_switches(history)
        self.switches += clip_switches
        self.switches_apart += clip_switches if apart else 0


def smoothed(frames: list[np.ndarray], results: list[DensePoseResult], mode: str) -> tuple[list[DensePoseResult], float]:
    """The results as `--temporal mode` gives them, and the seconds that took."""
    if mode == "off":
        return results, 0.0
    started = time.perf_counter()
    smoother = TemporalSmoother(mode)
    out = [result for frame, raw in zip(frames, results) for _, result in smoother.push(frame, raw)]
    out += [result for _, result in smoother.flush()]
    return out, time.perf_counter() - started


def strip(frames: list[np.ndarray], truths: list, variants: dict[str, list[DensePoseResult]], count: int = 8) -> np.ndarray:
    """Rows: the frames, the true parts, then each variant's parts (part colours as the segm preset),
    over `count` consecutive frames from the middle of the clip, each labelled on its left."""
    start = max(0, len(frames) // 2 - count // 2)
    chosen = range(start, min(len(frames), start + count))
    # Cropped to the people: the box around every true body pixel of the chosen frames, plus a margin.
    rows_, cols_ = np.nonzero(np.any([truths[i].I > 0 for i in chosen], axis=0))
    if rows_.size:
        margin = 8
        window = (slice(max(rows_.min() - margin, 0), rows_.max() + margin + 1), slice(max(cols_.min() - margin, 0), cols_.max() + margin + 1))
    else:
        window = (slice(None), slice(None))
    rows = [("frames", [frames[i][window] for i in chosen]), ("truth", [part_colours(truths[i].I)[window] for i in chosen])]
    rows += [(f"--temporal {name}", [part_colours(results[i].to_dense().I)[window] for i in chosen]) for name, results in variants.items()]
    height = rows[0][1][0].shape[0]
    lines = []
    for name, pictures in rows:
        label = np.full((height, 170, 3), 255, np.uint8)
        cv2.putText(label, name, (6, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        lines.append(np.concatenate([label, *pictures], axis=1))
    picture = np.concatenate(lines, axis=0)
    scale = min(1.0, 1600 / picture.shape[1])
    return cv2.resize(picture, (round(picture.shape[1] * scale), round(picture.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def part_colours(parts: np.ndarray) -> np.ndarray:
    """Parts 1..24 in the colours of OpenCV's JET map, background black."""
    coloured = cv2.applyColorMap((parts.astype(np.uint16) * 10).clip(0, 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return np.where(parts[..., None] > 0, coloured, 0).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", type=Path, help="a folder written by `densepose synth --video`")
    parser.add_argument("--model", default="default", help="zoo name, checkpoint or exported file (default: the embedded model)")
    parser.add_argument("--min-score", type=float, default=0.8, help="people are detections above this (default 0.8, as predict)")
    parser.add_argument("--clips-limit", type=int, help="only the first N clips")
    parser.add_argument("--picture", type=Path, help="also write a PNG: 8 consecutive frames of one clip, "
                                                     "its true parts and each mode's predicted parts")
    parser.add_argument("--picture-clip", type=int, default=0, help="the clip --picture shows (default 0)")
    args = parser.parse_args()
    folders = sorted(p for p in args.clips.glob("clip_*") if p.is_dir())[: args.clips_limit]
    if not folders:
        print(f"no clip_NNNN folders in {args.clips}", file=sys.stderr)
        return 1
    predictor = Predictor(load_model(args.model), min_score=args.min_score)
    figures = {variant: Figures() for variant in VARIANTS}
    images, annotations = [], []
    apart_clips = frames = 0
    seconds = 0.0
    for clip_index, folder in enumerate(tqdm(folders, unit="clip")):
        dataset = json.loads((folder / "annotations.json").read_text())
        tracker = Tracker()
        frames_rgb, results, truths, image_ids = [], [], [], []
        for image in sorted(dataset["images"], key=lambda entry: entry["file_name"]):
            image_ids.append(clip_index * 100_000 + image["id"])
            images.append({**image, "id": image_ids[-1], "file_name": f"{folder.name}/{image['file_name']}"})
            rgb = read_image(folder / "images" / image["file_name"])
            frames_rgb.append(rgb)
            truths.append(read_dense(folder / "dense" / (Path(image["file_name"]).stem + ".npz")))
            started = time.perf_counter()
            results.append(tracker.update(rgb, predictor(rgb)))
            seconds += time.perf_counter() - started
            frames += 1
        for annotation in dataset["annotations"]:
            annotations.append({**annotation, "id": clip_index * 100_000 + annotation["id"],
                                "image_id": clip_index * 100_000 + annotation["image_id"]})
        apart = not people_overlap(truths)
        apart_clips += apart
        shown = {}
        for variant in VARIANTS:
            variant_results, variant_seconds = smoothed(frames_rgb, results, variant)
            figures[variant].add_clip(variant_results, truths, image_ids, apart)
            figures[variant].seconds += variant_seconds
            shown[variant] = variant_results
        if args.picture and clip_index == args.picture_clip:
            write_picture(args.picture, strip(frames_rgb, truths, shown))
    first = json.loads((folders[0] / "annotations.json").read_text())
    ground_truth = {**first, "images": images, "annotations": annotations}
    surface = resolve_surface("synthetic")
    print(f"{len(folders)} clips, {frames} frames, model {args.model}, people above {args.min_score}; "
          f"{seconds / frames:.3f} s per frame (predict + track); {apart_clips} clips where people never overlap")
    print("| --temporal | fine-part mIoU | GPS AP | GPSm AP | box AP | flicker rate | U/V jitter | id switches (all clips) "
          "| id switches (people apart) | smoothing, s per frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant, sums in figures.items():
        metrics = evaluate(ground_truth, sums.records, surface)
        print(f"| {variant} | {part_miou(sums.confusion):.3f} | {metrics['gps']['AP']:.2f} | {metrics['gpsm']['AP']:.2f} "
              f"| {metrics['bbox']['AP']:.2f} | {sums.flicker.rate:.2%} | {sums.flicker.jitter:.4f} | {sums.switches} "
              f"| {sums.switches_apart} | {sums.seconds / frames:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
