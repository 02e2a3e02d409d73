"""The pictures of docs/surface.md (needs the [surface] extra).

    python scripts/make_surface_pictures.py docs/images

surface_smpl.png: left, the 24 chart tiles with every chart point in the colour of its SMPL vertex
(the `smpl` render's colours; gaps of the charts black); right, the generated checkerboard atlas in
SMPL's own texture layout (`densepose texture --smpl-texture`).
surface_texture_transfer.jpg: a synthetic person's frames, the atlas unwrapped from 8 of them, and
another synthetic person painted with it; both through the synthetic truth's charts, so the picture
shows what unwrapping and painting do, not how well a model predicts the charts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from densepose_torch.io.images import write_picture
from densepose_torch.render import dp_iuv_texture
from densepose_torch.render.texture import ATLAS_COLUMNS, ATLAS_ROWS, default_texture_atlas, tile_origin
from densepose_torch.results import ChartResult, DensePoseResult
from densepose_torch.surface import SmplSurface
from densepose_torch.surface.atlas import AtlasAccumulator
from densepose_torch.surface.smpl_texture import atlas_to_smpl, load_smpl_uv, smpl_texture_map
from densepose_torch.synthetic import SceneGenerator
from densepose_torch.synthetic.clips import ClipRenderer

TILE = 128


def smpl_picture() -> np.ndarray:
    surface = SmplSurface()
    atlas = np.zeros((ATLAS_ROWS * TILE, ATLAS_COLUMNS * TILE, 3), np.uint8)
    centres = (np.arange(TILE) + 0.5) / TILE
    u, v = np.meshgrid(centres, 1 - centres)
    for part in range(1, 25):
        points = surface.locator.locate(np.full(u.size, part), u.reshape(-1), v.reshape(-1))
        tile = surface.colours[points.vertex].reshape(TILE, TILE, 3)
        tile[~points.inside.reshape(TILE, TILE)] = 0
        top, left = tile_origin(part, TILE)
        atlas[top : top + TILE, left : left + TILE] = tile
    texture = atlas_to_smpl(default_texture_atlas(200), smpl_texture_map(surface.charts, load_smpl_uv(), 6 * TILE, 200))
    return np.concatenate([atlas, np.full((6 * TILE, 16, 3), 255, np.uint8), texture], axis=1)


def truth_result(scene, person: int) -> DensePoseResult:
    height, width = scene.I.shape
    mine = scene.instance == person
    labels = np.where(mine, scene.I, 0).astype(np.uint8)
    uv = np.stack([np.where(mine, scene.U, 0), np.where(mine, scene.V, 0)]).astype(np.float32)
    return DensePoseResult((height, width), np.array([[0, 0, width, height]], np.float32), np.array([1.0], np.float32),
                           [ChartResult(0, 0, labels, uv)], chart_body="synthetic")


def transfer_picture() -> np.ndarray:
    generator = SceneGenerator(384)
    source = ClipRenderer(generator, (7, 3))
    accumulator = AtlasAccumulator(TILE)
    frames = [source.frame(index) for index in range(0, 80, 10)]
    for scene in frames:
        accumulator.add(scene.image, truth_result(scene, 1))
    atlas = accumulator.atlas()
    target = ClipRenderer(generator, (7, 5)).frame(0)
    painted = dp_iuv_texture(target.image, truth_result(target, 1), atlas)
    atlas_shown = cv2.resize(atlas[..., :3], (256, 384), interpolation=cv2.INTER_AREA)
    gap = np.full((384, 12, 3), 255, np.uint8)
    return np.concatenate([frames[0].image, gap, frames[4].image, gap, atlas_shown, gap, target.image, gap, painted], axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    write_picture(args.folder / "surface_smpl.png", smpl_picture())
    write_picture(args.folder / "surface_texture_transfer.jpg", transfer_picture())
    return 0


if __name__ == "__main__":
    sys.exit(main())
