"""Pictures of the synthetic data for the docs.

    python -m densepose_torch.synthetic.contact_sheet docs/images

writes docs/images/synthetic_samples.png (rendered scenes with their I, U and V maps),
docs/images/synthetic_charts.png (the body's 24 parts and a UV checkerboard, front and back) and
docs/images/synthetic_photo_samples.png (scenes of the photo look over scikit-image's photographs).
"""
from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import cv2
import numpy as np

from ..definitions import PARTS
from ..io.atomic import atomic_path
from .backgrounds import SCIKIT_IMAGE
from .body import BodyModel, load_body
from .raster import rasterize
from .scene import SceneConfig, SceneGenerator


def part_palette() -> np.ndarray:
    """(25, 3) uint8 RGB colours of background (black) and parts 1..24, neighbours distinct."""
    colours = [(0, 0, 0)]
    for i in PARTS:
        r, g, b = colorsys.hsv_to_rgb((i * 7 % 24) / 24.0, 0.9 if i % 2 else 0.55, 1.0 if i % 3 else 0.75)
        colours.append((int(255 * r), int(255 * g), int(255 * b)))
    return np.array(colours, dtype=np.uint8)


def _colormap(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = cv2.applyColorMap((np.clip(values, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    return np.where(mask[..., None], rgb, 0).astype(np.uint8)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def make_contact_sheet(seeds: list[int], size: int = 256, generator: SceneGenerator | None = None) -> np.ndarray:
    """(len(seeds) * size, 4 * size, 3) RGB: image, I, U, V of one scene per row (scenes of
    `generator`, by default the plain look without background pictures)."""
    generator = SceneGenerator(size=size) if generator is None else generator
    palette = part_palette()
    rows = []
    for row, seed in enumerate(seeds):
        scene = generator.render(seed)
        fg = scene.I > 0
        tiles = [scene.image, palette[scene.I], _colormap(scene.U, fg), _colormap(scene.V, fg)]
        if row == 0:
            tiles = [_label(t, name) for t, name in zip(tiles, ("image", "I (part)", "U", "V"))]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def make_chart_sheet(body: BodyModel | None = None, height: int = 420) -> np.ndarray:
    """The rest body from the front, back and right side: parts, then a UV checkerboard (8x8
    squares per chart, darker where U + V squares alternate)."""
    body = body if body is not None else load_body()
    palette = part_palette().astype(np.float32)
    vertices = body.rest_vertices.astype(np.float64)
    face_uv = body.face_uv.astype(np.float64)
    normals = body.vertex_normals(vertices)
    tiles = []
    for mode in ("parts", "checker"):
        for yaw in (0.0, np.pi, -np.pi / 2):
            c, s = np.cos(yaw), np.sin(yaw)
            rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            p = vertices @ rot.T
            n = normals @ rot.T
            scale = 0.9 * height / np.ptp(p[:, 2])
            width = int(height * 0.75)
            middle = 0.5 * (p[:, 2].min() + p[:, 2].max())
            screen = np.stack([p[:, 0] * scale + width / 2, (middle - p[:, 2]) * scale + height / 2, p[:, 1] + 5.0], axis=1)
            frags = rasterize(screen, body.faces, height, width)
            hit = frags.face >= 0
            face = frags.face[hit]
            bary = frags.bary[hit]
            colour = palette[body.face_part[face]]
            if mode == "checker":
                uv = np.einsum("nk,nkc->nc", bary, face_uv[face])
                check = (np.floor(uv[:, 0] * 8) + np.floor(uv[:, 1] * 8)) % 2
                colour = colour * (0.45 + 0.55 * check[:, None])
            normal = np.einsum("nk,nkc->nc", bary, n[body.faces[face]])
            light = np.clip(-normal[:, 1] / np.maximum(np.linalg.norm(normal, axis=1), 1e-9), 0, 1)
            tile = np.full((height, width, 3), 255, np.uint8)
            tile[hit] = np.clip(colour * (0.55 + 0.45 * light[:, None]), 0, 255).astype(np.uint8)
            tiles.append(tile)
    return np.concatenate([np.concatenate(tiles[:3], axis=1), np.concatenate(tiles[3:], axis=1)], axis=0)


def _save(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic-data pictures of the docs.")
    parser.add_argument("folder", type=Path, help="output folder, e.g. docs/images")
    parser.add_argument("--seeds", type=int, nargs="+", default=[6, 9, 19, 23])
    parser.add_argument("--photo-seeds", type=int, nargs="+", default=[2, 5, 11, 14],
                        help="scenes of the photo look over the scikit-image backgrounds (needs the [train] extra)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    _save(args.folder / "synthetic_samples.png", make_contact_sheet(args.seeds, args.size))
    _save(args.folder / "synthetic_charts.png", make_chart_sheet())
    photo = SceneGenerator(args.size, backgrounds=SCIKIT_IMAGE, config=SceneConfig(args.size, look="photo"))
    _save(args.folder / "synthetic_photo_samples.png", make_contact_sheet(args.photo_seeds, args.size, photo))
    print(f"wrote synthetic_samples.png, synthetic_charts.png and synthetic_photo_samples.png in {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
