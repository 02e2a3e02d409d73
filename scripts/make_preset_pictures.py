"""Make docs/images/preset_<name>.png: every `densepose predict --render` preset on the bundled
astronaut photo.

    python scripts/make_preset_pictures.py                      # hand-drawn DensePose result
    python scripts/make_preset_pictures.py --model R_50_FPN_s1x # a real model's result

Without --model the result is drawn by hand (body parts as ellipses and polygons over the
astronaut, U and V running across each part's bounding box): it shows what each preset looks
like, not what a model predicts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from densepose_torch.assets import example_image_path
from densepose_torch.io.images import read_image, write_picture
from densepose_torch.render import PRESETS
from densepose_torch.results import ChartResult, DensePoseResult

REPOSITORY = Path(__file__).resolve().parents[1]

# (part, shape, points): ellipses as ((cx, cy), (ax, ay)), polygons as vertex lists, in the
# 512x512 photo's pixels; later shapes cover earlier ones.
HAND_DRAWN_PARTS = [
    (2, "polygon", [(118, 262), (300, 262), (352, 300), (372, 512), (40, 512), (52, 300)]),  # front torso
    (16, "polygon", [(52, 300), (118, 262), (110, 420), (60, 460), (22, 420)]),  # right upper arm
    (20, "polygon", [(22, 420), (60, 460), (150, 470), (160, 512), (30, 512)]),  # right lower arm
    (3, "ellipse", ((165, 492), (28, 20))),  # right hand
    (15, "polygon", [(300, 262), (352, 300), (362, 420), (318, 430), (300, 350)]),  # left upper arm
    (19, "polygon", [(318, 430), (362, 420), (350, 512), (300, 512)]),  # left lower arm
    (1, "polygon", [(150, 230), (280, 230), (300, 262), (118, 262)]),  # collar: back of the torso
    (23, "ellipse", ((226, 100), (74, 88))),  # head, side
    (24, "ellipse", ((224, 120), (52, 68))),  # head, face
]
BOX = (18.6, 9.3, 373.8, 511.9)


def hand_drawn_result(image: np.ndarray) -> DensePoseResult:
    """A one-person DensePoseResult drawn over the astronaut photo."""
    x0, y0, x1, y1 = BOX
    height, width = max(int(y1 - y0), 1), max(int(x1 - x0), 1)
    origin = np.array([int(x0), int(y0)])
    labels = np.zeros((height, width), np.uint8)
    uv = np.zeros((2, height, width), np.float32)
    for part, shape, points in HAND_DRAWN_PARTS:
        mask = np.zeros((height, width), np.uint8)
        if shape == "ellipse":
            (cx, cy), axes = points
            cv2.ellipse(mask, (cx - int(origin[0]), cy - int(origin[1])), axes, 0, 0, 360, 1, -1)
        else:
            cv2.fillPoly(mask, [np.array(points) - origin], 1)
        body = mask.astype(bool)
        rows, cols = np.nonzero(body)
        labels[body] = part
        uv[0][body] = (cols - cols.min()) / max(cols.max() - cols.min(), 1)
        uv[1][body] = 1.0 - (rows - rows.min()) / max(rows.max() - rows.min(), 1)
    chart = ChartResult(x=int(origin[0]), y=int(origin[1]), labels=labels, uv=uv)
    return DensePoseResult(image_size=image.shape[:2], boxes=np.array([BOX], np.float32), scores=np.array([0.9953], np.float32),
                           charts=[chart])


def model_result(image: np.ndarray, model: str, min_score: float) -> DensePoseResult:
    from densepose_torch.checkpoint import load_model
    from densepose_torch.inference import Predictor

    return Predictor(load_model(model), min_score=min_score).batch([image])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="zoo name or checkpoint; default: the hand-drawn result")
    parser.add_argument("--min-score", type=float, default=0.8)
    parser.add_argument("--output", type=Path, default=REPOSITORY / "docs" / "images")
    args = parser.parse_args()
    image = read_image(example_image_path())
    result = model_result(image, args.model, args.min_score) if args.model else hand_drawn_result(image)
    for name, render in PRESETS.items():
        path = args.output / f"preset_{name}.png"
        write_picture(path, render(image, result))
        print(path)


if __name__ == "__main__":
    main()
