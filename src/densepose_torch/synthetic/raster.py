"""A vectorised triangle rasterizer (numpy, z-buffer, perspective-correct barycentrics).

Every triangle is expanded to the pixel centres of its bounding box, all candidate fragments are
tested at once, and the nearest fragment of each pixel wins through one `np.minimum.at` on an
integer key (depth bits, then face index): equal depths resolve to the lower face index, so the
result does not depend on evaluation order and the same input gives the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EMPTY_KEY = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Fragments:
    """What the rasterizer saw at each pixel of an (H, W) image."""

    face: np.ndarray  # (H, W) int32, index of the visible face, -1 for background
    bary: np.ndarray  # (H, W, 3) float32 perspective-correct barycentric weights (0 on background)
    depth: np.ndarray  # (H, W) float32 camera depth of the visible surface, inf on background


def rasterize(
    screen: np.ndarray, faces: np.ndarray, height: int, width: int, cull_backfaces: bool = True
) -> Fragments:
    """Rasterize triangles given in screen space.

    `screen` is (N, 3): pixel x, pixel y (pixel (i, j) has its centre at x = j + 0.5,
    y = i + 0.5) and camera depth (> 0). `faces` is (F, 3) vertex indices. With
    `cull_backfaces`, triangles whose corners appear clockwise on screen (y down) are skipped:
    they face away from a camera looking at a counter-clockwise-outward mesh.
    """
    screen = np.asarray(screen, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {faces.shape}")
    corners = screen[faces]  # (F, 3, 3)
    x, y, z = corners[..., 0], corners[..., 1], corners[..., 2]
    area2 = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    keep = (z > 1e-6).all(axis=1) & np.isfinite(area2)
    keep &= area2 < 0 if cull_backfaces else area2 != 0
    xmin = np.ceil(x.min(axis=1) - 0.5)
    xmax = np.floor(x.max(axis=1) - 0.5)
    ymin = np.ceil(y.min(axis=1) - 0.5)
    ymax = np.floor(y.max(axis=1) - 0.5)
    keep &= (xmax >= 0) & (ymax >= 0) & (xmin <= width - 1) & (ymin <= height - 1)
    face_ids = np.nonzero(keep)[0]

    face_map = np.full((height, width), -1, dtype=np.int32)
    bary_map = np.zeros((height, width, 3), dtype=np.float32)
    depth_map = np.full((height, width), np.inf, dtype=np.float32)
    if len(face_ids) == 0:
        return Fragments(face_map, bary_map, depth_map)

    x0 = np.clip(xmin[face_ids], 0, width - 1).astype(np.int64)
    x1 = np.clip(xmax[face_ids], 0, width - 1).astype(np.int64)
    y0 = np.clip(ymin[face_ids], 0, height - 1).astype(np.int64)
    y1 = np.clip(ymax[face_ids], 0, height - 1).astype(np.int64)
    box_w = x1 - x0 + 1
    counts = box_w * (y1 - y0 + 1)
    owner = np.repeat(np.arange(len(face_ids)), counts)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x0[owner] + offset % box_w[owner]
    py = y0[owner] + offset // box_w[owner]

    coeff = _barycentric_coefficients(x[face_ids], y[face_ids], area2[face_ids])  # (F', 2, 3)
    cx = px + 0.5
    cy = py + 0.5
    c = coeff[owner]
    lam0 = c[:, 0, 0] * cx + c[:, 0, 1] * cy + c[:, 0, 2]
    lam1 = c[:, 1, 0] * cx + c[:, 1, 1] * cy + c[:, 1, 2]
    lam2 = 1.0 - lam0 - lam1
    # A small tolerance: a pixel centre exactly on an edge shared by two triangles must not fall
    # through both by rounding (covered twice is fine, the z-test picks one).
    eps = -1e-9
    inside = (lam0 >= eps) & (lam1 >= eps) & (lam2 >= eps)
    owner, px, py = owner[inside], px[inside], py[inside]
    lam = np.stack([lam0[inside], lam1[inside], lam2[inside]], axis=1)
    inv_z = (lam / z[face_ids][owner]).sum(axis=1)
    depth = (1.0 / inv_z).astype(np.float32)

    # Positive float32 values order like their bit patterns, so (depth bits, face) packs into
    # one sortable int64 and a single scatter-min finds the nearest fragment per pixel.
    key = (depth.view(np.int32).astype(np.int64) << 32) | face_ids[owner]
    zkey = np.full(height * width, _EMPTY_KEY, dtype=np.int64)
    np.minimum.at(zkey, py * width + px, key)

    hit = np.nonzero(zkey != _EMPTY_KEY)[0]
    win_face = (zkey[hit] & 0xFFFFFFFF).astype(np.int64)
    hy, hx = np.divmod(hit, width)
    wf = faces[win_face]
    wx, wy, wz = screen[wf, 0], screen[wf, 1], screen[wf, 2]
    warea = (wx[:, 1] - wx[:, 0]) * (wy[:, 2] - wy[:, 0]) - (wx[:, 2] - wx[:, 0]) * (wy[:, 1] - wy[:, 0])
    wc = _barycentric_coefficients(wx, wy, warea)
    hcx, hcy = hx + 0.5, hy + 0.5
    l0 = wc[:, 0, 0] * hcx + wc[:, 0, 1] * hcy + wc[:, 0, 2]
    l1 = wc[:, 1, 0] * hcx + wc[:, 1, 1] * hcy + wc[:, 1, 2]
    lam = np.clip(np.stack([l0, l1, 1.0 - l0 - l1], axis=1), 0.0, 1.0)
    persp = lam / wz
    inv = persp.sum(axis=1, keepdims=True)
    face_map[hy, hx] = win_face
    bary_map[hy, hx] = persp / inv
    depth_map[hy, hx] = 1.0 / inv[:, 0]
    return Fragments(face_map, bary_map, depth_map)


def _barycentric_coefficients(x: np.ndarray, y: np.ndarray, area2: np.ndarray) -> np.ndarray:
    """(F, 2, 3): lambda_k(px, py) = a * px + b * py + c for corners k = 0, 1 (lambda_2 = 1 - both)."""
    inv = 1.0 / area2
    a0 = (y[:, 1] - y[:, 2]) * inv
    b0 = (x[:, 2] - x[:, 1]) * inv
    c0 = (x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1]) * inv
    a1 = (y[:, 2] - y[:, 0]) * inv
    b1 = (x[:, 0] - x[:, 2]) * inv
    c1 = (x[:, 2] * y[:, 0] - x[:, 0] * y[:, 2]) * inv
    return np.stack([np.stack([a0, b0, c0], 1), np.stack([a1, b1, c1], 1)], axis=1)
