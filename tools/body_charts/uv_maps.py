"""Disk parameterisation: map a triangulated topological disk onto the unit square.

The border goes onto the square by arc length between four chosen corners; the interior follows
a harmonic map with mean-value weights, then a few stretch-reducing reweightings. Positions are
(N, 3) float64 (a flat mesh too: z = 0), faces (F, 3) local vertex indices, UVs (N, 2).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

Corner = tuple[float, float]


def mean_value_weights(pos: np.ndarray, faces: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) Floater's mean-value weights W[i, j] = (tan(a/2) + tan(b/2)) / |x_i - x_j|, a and b
    the angles at i beside edge ij. All positive, so a convex boundary gives a one-to-one map;
    on a flat mesh they reproduce affine functions exactly."""
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, m = faces[:, k], faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]
        eij, eil = pos[j] - pos[i], pos[m] - pos[i]
        lij, lil = np.linalg.norm(eij, axis=1), np.linalg.norm(eil, axis=1)
        cos = np.clip((eij * eil).sum(axis=1) / (lij * lil), -1.0, 1.0)
        half_tan = np.tan(0.5 * np.arccos(cos))
        rows += [i, i]
        cols += [j, m]
        vals += [half_tan / lij, half_tan / lil]
    w = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return w.tocsr()


def harmonic_map(weights: sp.csr_matrix, boundary: np.ndarray, boundary_uv: np.ndarray) -> np.ndarray:
    """(n, 2) UV with the `boundary` vertices (B,) fixed at `boundary_uv` (B, 2) and every interior
    vertex at the `weights`-weighted mean of its neighbours (a sparse linear solve)."""
    n = weights.shape[0]
    interior = np.setdiff1d(np.arange(n), boundary)
    lap = sp.diags(np.asarray(weights.sum(axis=1)).ravel()) - weights
    uv = np.zeros((n, 2))
    uv[boundary] = boundary_uv
    a = lap[interior][:, interior].tocsc()
    rhs = -lap[interior][:, boundary] @ boundary_uv
    uv[interior] = np.column_stack([spsolve(a, rhs[:, 0]), spsolve(a, rhs[:, 1])])
    return uv


def triangle_stretch(pos: np.ndarray, uv: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face (F,): Sander's L2 stretch (root mean square of the 3D length per unit of UV over
    all UV directions), the 3D area and the signed UV area (negative: flipped)."""
    p, q = pos[faces], uv[faces]
    s1, s2 = q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]
    area_uv = 0.5 * (s1[:, 0] * s2[:, 1] - s1[:, 1] * s2[:, 0])
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    # Partial derivatives of the 3D position along U (ss) and V (st).
    ss = (d1 * s2[:, 1:2] - d2 * s1[:, 1:2]) / (2 * area_uv[:, None])
    st = (d2 * s1[:, 0:1] - d1 * s2[:, 0:1]) / (2 * area_uv[:, None])
    a, c = (ss * ss).sum(axis=1), (st * st).sum(axis=1)
    area3d = 0.5 * np.linalg.norm(np.cross(d1, d2), axis=1)
    return np.sqrt(0.5 * (a + c)), area3d, area_uv


def stretch_minimised_map(
    pos: np.ndarray, faces: np.ndarray, boundary: np.ndarray, boundary_uv: np.ndarray,
    iterations: int = 20, damping: float = 0.5,
) -> np.ndarray:
    """(N, 2) UV: the harmonic map, then Yoshizawa-style reweighting w_ij <- w_ij / sigma_j **
    damping (sigma_j: the area-weighted stretch around vertex j), keeping the iterate with the
    least area-weighted L2 stretch. The weights stay positive, so every iterate stays one-to-one
    in exact arithmetic; an iterate that folds numerically ends the iteration.

    Triangles with all three corners on the border are flat in UV whatever the interior does
    (they lie on one side of the square); they are left out of the stretch measure."""
    n = len(pos)
    on_boundary = np.zeros(n, dtype=bool)
    on_boundary[boundary] = True
    measured = ~on_boundary[faces].all(axis=1)
    weights = mean_value_weights(pos, faces, n)
    best, best_err, orientation = None, np.inf, None
    for _ in range(iterations):
        uv = harmonic_map(weights, boundary, boundary_uv)
        sigma, area3d, area_uv = triangle_stretch(pos, uv, faces[measured])
        if orientation is None:
            orientation = np.sign(area_uv.sum())
        if (area_uv * orientation <= 0).any():
            if best is None:
                raise ValueError("the harmonic map folds")
            break  # numerically folded: keep the previous iterate
        err = np.sqrt((sigma ** 2 * area3d).sum() / area3d.sum())
        if err < best_err:
            best, best_err = uv, err
        vs = np.zeros(n)
        va = np.zeros(n)
        for k in range(3):
            np.add.at(vs, faces[measured][:, k], sigma ** 2 * area3d)
            np.add.at(va, faces[measured][:, k], area3d)
        vertex_sigma = np.sqrt(vs / np.maximum(va, 1e-30))
        vertex_sigma[va == 0] = 1.0
        weights = weights @ sp.diags(vertex_sigma ** -damping)
    return best


def square_boundary(pos: np.ndarray, loop: np.ndarray, corners: list[int], square: list[Corner]) -> np.ndarray:
    """(B, 2) UV of the boundary `loop` (B,) of vertex indices into `pos`: loop[corners[k]] goes
    to square[k], and the vertices between two corners go along the straight side between them
    in proportion to 3D arc length. `corners` must be in loop order (cyclically)."""
    out = np.zeros((len(loop), 2))
    seg = np.linalg.norm(pos[loop] - pos[np.roll(loop, -1)], axis=1)
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        idx = [(a + t) % len(loop) for t in range(((b - a) % len(loop)) + 1)]
        lengths = np.concatenate([[0.0], np.cumsum(seg[idx[:-1]])])
        if not lengths[-1] > 0:
            raise ValueError("two corners coincide")
        t = lengths / lengths[-1]
        p, q = np.array(square[k]), np.array(square[(k + 1) % 4])
        out[idx] = p[None] + t[:, None] * (q - p)[None]
    return out
