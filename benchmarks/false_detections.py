"""How often a model sees a person in photographs that show none.

    python scripts/people_free_photos.py -o /work/people_free        # 36 photos from Debian and scikit-learn
    python benchmarks/false_detections.py /work/people_free
    python benchmarks/false_detections.py /work/people_free --model default --model out/run/model_final.pth \
        --picture docs/images/false_detections.jpg

For every model (default: the embedded one) and every image of the folder: the detections scoring
at least --min-score (0.8, `densepose predict`'s default), and at a few lower thresholds for
scale. Prints the false detections per image and per 20 images; --picture draws every image with
its detections (one row of tiles per model), the pictures people look at to see what fools it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from densepose_torch import DensePoseError, Predictor, load_model
from densepose_torch.io.images import IMAGE_EXTENSIONS, read_image, write_picture

THRESHOLDS = (0.5, 0.7, 0.9)
TILE = 160


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of photographs without people")
    parser.add_argument("--model", action="append", help="zoo name, checkpoint or 'default' (repeatable; default: the embedded model)")
    parser.add_argument("--min-score", type=float, default=0.8)
    parser.add_argument("--picture", type=Path, help="write the images with their detections here (PNG)")
    args = parser.parse_args()

    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if args.folder.is_dir() else []
    if not files:
        raise SystemExit(f"false_detections: error: no images in {args.folder}")
    lowest = min((args.min_score,) + THRESHOLDS)
    rows = []
    for name in args.model or ["default"]:
        try:
            predictor = Predictor(load_model(None if name == "default" else name), min_score=lowest)
        except DensePoseError as error:
            raise SystemExit(f"false_detections: error: {error}") from None
        scores, tiles = [], []
        for path in files:
            image = read_image(path)
            result = predictor(image)
            scores.append(np.asarray(result.scores, np.float64))
            tiles.append(_tile(image, result.boxes, result.scores, args.min_score))
        found = [int((s >= args.min_score).sum()) for s in scores]
        print(f"model {name}: {len(files)} people-free images, min score {args.min_score:g}: "
              f"{sum(found)} false detections in {sum(f > 0 for f in found)} images "
              f"({20 * sum(found) / len(files):.2f} per 20 images)")
        print("  at other thresholds: " + ", ".join(
            f"{t:g}: {sum(int((s >= t).sum()) for s in scores)}" for t in THRESHOLDS))
        for path, s in zip(files, scores):
            if (s >= args.min_score).any():
                print(f"  {path.name}: " + ", ".join(f"{v:.2f}" for v in s[s >= args.min_score]))
        rows.append(np.concatenate(tiles, axis=1))
    if args.picture:
        write_picture(args.picture, _grid(rows, len(files)))
        print(f"picture: {args.picture}")


def _tile(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, min_score: float) -> np.ndarray:
    """The image fitted into a TILE x TILE square with its detections (red: at least min_score)."""
    h, w = image.shape[:2]
    scale = TILE / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = np.full((TILE, TILE, 3), 255, np.uint8)
    tile[: small.shape[0], : small.shape[1]] = small
    for box, score in zip(np.asarray(boxes) * scale, scores):
        colour = (220, 30, 30) if score >= min_score else (250, 200, 40)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(tile, (x0, y0), (x1, y1), colour, 2)
        cv2.putText(tile, f"{score:.2f}", (x0 + 2, max(10, y0 + 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return tile


def _grid(rows: list[np.ndarray], count: int, per_line: int = 12) -> np.ndarray:
    """Each model's tiles wrapped into lines of `per_line`, the models one below the other."""
    lines = []
    for row in rows:
        for start in range(0, count, per_line):
            part = row[:, start * TILE: (start + per_line) * TILE]
            pad = per_line * TILE - part.shape[1]
            lines.append(np.pad(part, ((0, 4), (0, pad), (0, 0)), constant_values=255))
        lines.append(np.full((12, per_line * TILE, 3), 255, np.uint8))
    return np.concatenate(lines, axis=0)


if __name__ == "__main__":
    main()
