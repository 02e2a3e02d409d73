"""Before/after pictures of the embedded default model on real photos, for the model card.

    python scripts/make_default_model_pictures.py --before OLD.pth --after NEW.pth -o docs/images/default_model_real_photos.jpg

Photos: the bundled astronaut, and from ../shared/data (real DensePose data, CC BY-NC 4.0, never
copied into the repository) the street photo demo_im.jpg and the person crop of
demo_dp_single_ann.pkl. Each row is one photo: the photo, the `segm` render of each model (parts in
DensePose's colours over the grey photo, boxes with scores). Prints, per photo and model, the people
found at --min-score (0.8, as `densepose predict`), and for the street photo how many of the people
the original DensePose model found (demo_im_INDS.png) have a detection of box IoU >= 0.5.
"""
from __future__ import annotations

import argparse
import importlib.resources
from pathlib import Path

import cv2
import numpy as np
import torch

from densepose_torch import DensePoseError, Predictor, load_model
from densepose_torch.io.images import read_image, write_picture
from densepose_torch.io.safe_pickle import safe_load
from densepose_torch.ops.boxes import box_iou
from densepose_torch.render import PRESETS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HEIGHT = 360


def photos() -> dict[str, np.ndarray]:
    found = {"astronaut": read_image(importlib.resources.files("densepose_torch.assets") / "astronaut.png")}
    if (SHARED / "demo_im.jpg").is_file():
        found["street (demo_im.jpg)"] = read_image(SHARED / "demo_im.jpg")
    if (SHARED / "demo_dp_single_ann.pkl").is_file():
        with open(SHARED / "demo_dp_single_ann.pkl", "rb") as handle:
            found["person crop (demo_dp_single_ann.pkl)"] = np.ascontiguousarray(safe_load(handle)["ICrop"], np.uint8)
    return found


def original_people() -> np.ndarray | None:
    """XYXY boxes of the people in the original DensePose model's instance image of demo_im.jpg."""
    path = SHARED / "demo_im_INDS.png"
    if not path.is_file():
        return None
    inds = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    boxes = []
    for k in np.unique(inds[inds > 0]):
        ys, xs = np.nonzero(inds == k)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(boxes, np.float32)


def fit(image: np.ndarray) -> np.ndarray:
    scale = HEIGHT / image.shape[0]
    return cv2.resize(image, (max(1, round(image.shape[1] * scale)), HEIGHT), interpolation=cv2.INTER_AREA)


def label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(tile, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the previous default model (checkpoint)")
    parser.add_argument("--after", default="default", help="the new one (default: the embedded model)")
    parser.add_argument("--min-score", type=float, default=0.8)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    try:
        models = {name: Predictor(load_model(None if path == "default" else path), min_score=args.min_score)
                  for name, path in (("before", args.before), ("after", args.after))}
    except DensePoseError as error:
        raise SystemExit(f"make_default_model_pictures: error: {error}") from None
    reference = original_people()
    rows = []
    for title, image in photos().items():
        tiles = [label(fit(image), title.split(" (")[0])]
        for name, predictor in models.items():
            result = predictor(image)
            line = f"{title}: {name}: {len(result)} people, scores " + ", ".join(f"{s:.2f}" for s in result.scores)
            if title.startswith("street") and reference is not None and len(reference):
                found = torch.from_numpy(np.asarray(result.boxes, np.float32).reshape(-1, 4))
                iou = box_iou(torch.from_numpy(reference), found).numpy()
                matched = int((iou.max(axis=1, initial=0) >= 0.5).sum())
                line += f"; {matched} of the {len(reference)} people of the original DensePose model's output"
            print(line)
            tiles.append(label(fit(PRESETS["segm"](image, result)), f"{name}: {len(result)} people"))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 6), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    write_picture(args.output, np.concatenate(rows, axis=0))
    print(f"picture: {args.output}")


if __name__ == "__main__":
    main()
