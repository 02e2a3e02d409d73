"""Texture atlases for painting the 24 DensePose charts: the layout of the original DensePose
`texture_atlas_200.png`, 4 columns x 6 rows of N x N tiles (6N high, 4N wide). Part p (1..24) is
tile k = p - 1 = 6 * column + row, so parts 1-6 fill the first column top to bottom. Within a tile,
U runs left to right and V bottom to top (texel x = int(U * (N - 1)), y = int((1 - V) * (N - 1))).

The official atlases are licensed for non-commercial use only, so none is shipped: the default is
a generated, labelled checkerboard per part; any atlas image in this layout can be loaded instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..definitions import NUM_PARTS, PARTS
from ..errors import DensePoseError

ATLAS_COLUMNS = 4
ATLAS_ROWS = 6
DEFAULT_TILE_SIZE = 200
CHECKER_SQUARES = 8


def tile_origin(part: int, tile_size: int) -> tuple[int, int]:
    """(row, column) pixel of the top-left corner of part `part`'s tile."""
    column, row = divmod(part - 1, ATLAS_ROWS)
    return row * tile_size, column * tile_size


def texel_in_tile(u: np.ndarray, v: np.ndarray, tile_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) int64 within a tile of N = `tile_size` of the texel chart points (U, V) name:
    int((1 - V) (N - 1)), int(U (N - 1)), with U, V clipped to [0, 1] and computed in float32 (as
    the texture render always has): the one rule for reading and writing atlases."""
    last = tile_size - 1
    u = np.clip(np.asarray(u, np.float32), 0, 1)
    v = np.clip(np.asarray(v, np.float32), 0, 1)
    return ((1 - v) * last).astype(np.int64), (u * last).astype(np.int64)


def atlas_texel_index(parts: np.ndarray, u: np.ndarray, v: np.ndarray, tile_size: int) -> np.ndarray:
    """Flat index into a (6N, 4N) atlas of the texel each chart point (part 1..24, U, V) names."""
    origins = np.array([(0, 0)] + [tile_origin(part, tile_size) for part in PARTS], np.int64)
    row, column = texel_in_tile(u, v, tile_size)
    parts = np.asarray(parts, np.int64)
    return (origins[parts, 0] + row) * (ATLAS_COLUMNS * tile_size) + origins[parts, 1] + column


def default_texture_atlas(tile_size: int = DEFAULT_TILE_SIZE) -> np.ndarray:
    """A (6N, 4N, 3) uint8 RGB atlas: each part's tile is a checkerboard in its own hue with the
    part number written in the middle, so where each chart lands and which way U and V run can
    be read off a render."""
    atlas = np.zeros((ATLAS_ROWS * tile_size, ATLAS_COLUMNS * tile_size, 3), np.uint8)
    square = max(tile_size // CHECKER_SQUARES, 1)
    rows, columns = np.mgrid[0:tile_size, 0:tile_size]
    dark = ((rows // square + columns // square) % 2).astype(bool)
    for part in PARTS:
        hue = int(180 * (part - 1) / NUM_PARTS)
        light_rgb = cv2.cvtColor(np.array([[[hue, 110, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
        dark_rgb = cv2.cvtColor(np.array([[[hue, 255, 170]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
        tile = np.where(dark[:, :, None], dark_rgb, light_rgb).astype(np.uint8)
        label = str(part)
        scale = tile_size / 60.0
        thickness = max(int(round(tile_size / 40.0)), 1)
        (text_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        origin = ((tile_size - text_w) // 2, (tile_size + text_h) // 2)
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness + 2, cv2.LINE_AA)
        # Not pure black: black texels of an RGB atlas are transparent.
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (24, 24, 24), thickness, cv2.LINE_AA)
        top, left = tile_origin(part, tile_size)
        atlas[top : top + tile_size, left : left + tile_size] = tile
    return atlas


def load_texture_atlas(path: str | os.PathLike) -> np.ndarray:
    """An atlas image as (6N, 4N, 3) RGB or (6N, 4N, 4) RGBA uint8; an alpha channel, when the
    file has one, is kept (it sets how much of each texel covers the photo)."""
    path = Path(path)
    if not path.is_file():
        raise DensePoseError(f"no such texture atlas file: {path}")
    try:
        with Image.open(path) as picture:
            has_alpha = "A" in picture.getbands() or "transparency" in picture.info
            atlas = np.asarray(picture.convert("RGBA" if has_alpha else "RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise DensePoseError(f"cannot read texture atlas {path}: {error}") from None
    check_texture_atlas(atlas, str(path))
    return atlas


def check_texture_atlas(atlas: np.ndarray, what: str = "texture atlas") -> int:
    """The tile size N of a valid atlas; a DensePoseError for anything not 6N x 4N RGB(A) uint8."""
    if atlas.dtype != np.uint8 or atlas.ndim != 3 or atlas.shape[2] not in (3, 4):
        raise DensePoseError(f"{what}: a texture atlas must be an RGB or RGBA 8-bit image")
    height, width = atlas.shape[:2]
    tile_size = height // ATLAS_ROWS
    if tile_size == 0 or height != ATLAS_ROWS * tile_size or width != ATLAS_COLUMNS * tile_size:
        raise DensePoseError(f"{what}: a texture atlas is 4 tiles wide and 6 high (e.g. 800x1200), not {width}x{height}")
    return tile_size


def atlas_tiles(atlas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(24, N, N, 3) float64 tiles of an RGB(A) atlas in part order, and their (24, N, N) alpha
    in [0, 1]: the alpha channel / 255, or, without one, 1 where any channel is non-zero (black
    texels leave the photo as it is)."""
    tile_size = check_texture_atlas(atlas)
    tiles = np.zeros((NUM_PARTS, tile_size, tile_size, atlas.shape[2]), np.float64)
    for part in PARTS:
        top, left = tile_origin(part, tile_size)
        tiles[part - 1] = atlas[top : top + tile_size, left : left + tile_size]
    if atlas.shape[2] == 4:
        return tiles[..., :3], tiles[..., 3] / 255.0
    return tiles, (tiles.sum(axis=-1) > 0).astype(np.float64)
