"""From chart points (I, U, V) to the SMPL surface: the face that holds each point, its barycentric
coordinates there, and the nearest SMPL vertex.

Per part, the chart's faces are binned on a `grid` x `grid` raster of [0, 1]^2 (each face in every
cell its bounding box touches), so a point is tested only against the few faces of its cell: the
first face whose barycentric coordinates are all >= -1e-9 holds it. A point in none of them (a
prediction that falls in a gap of the chart, or outside it) is put on the part's chart vertex
nearest in (U, V), as DensePose's own IUV-to-face code does, and flagged `inside = False`. The
vertex is the chart vertex of the part nearest in (U, V), as DensePose's evaluator chooses it,
given as the SMPL vertex it lies on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..definitions import NUM_PARTS, PARTS
from .smpl import SmplCharts

EPSILON = 1e-9  # barycentric slack: a point on a shared edge belongs to the first face tested
CHUNK = 1 << 18  # points located at once (bounds the candidate arrays' memory)


@dataclass(frozen=True)
class SurfacePoints:
    """Where chart points lie on SMPL; -1 (and zero weights) where the part is 0 (background)."""

    face: np.ndarray  # (N,) int64: row of SmplCharts.faces
    barycentric: np.ndarray  # (N, 3) float64: weights of the face's corners, summing to 1
    vertex: np.ndarray  # (N,) int64: the nearest SMPL vertex, 0..6889
    inside: np.ndarray  # (N,) bool: (U, V) lay inside a face (else it was put on the nearest chart vertex)


@dataclass(frozen=True)
class _PartIndex:
    faces: np.ndarray  # (n,) face rows of this part
    corners: np.ndarray  # (n, 3, 2) each face's corners in the chart
    inverse: np.ndarray  # (n, 2, 2): maps p - origin to the second and third barycentric weights
    cell_start: np.ndarray  # (grid * grid + 1,) CSR offsets into cell_faces
    cell_faces: np.ndarray  # positions in `faces`, grouped by cell
    vertices: np.ndarray  # chart vertex rows of this part
    vertex_tree: cKDTree
    vertex_face: np.ndarray  # (len(vertices),) a face of this part at each of them


class ChartLocator:
    """Locates DensePose chart points on SMPL (module docstring). Building it takes about 0.15 s."""

    def __init__(self, charts: SmplCharts, grid: int = 256):
        self.charts = charts
        self.grid = grid
        self._parts = {part: self._index(part) for part in PARTS}

    def _index(self, part: int) -> _PartIndex:
        faces = np.flatnonzero(self.charts.face_part == part)
        corners = self.charts.uv[self.charts.faces[faces]]  # (n, 3, 2)
        edges = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], axis=2)  # columns b-a, c-a
        determinant = np.linalg.det(edges)
        inverse = np.linalg.inv(np.where(np.abs(determinant)[:, None, None] > 1e-14, edges, np.eye(2)))
        inverse[np.abs(determinant) <= 1e-14] = np.nan  # a degenerate face holds no point
        low = np.clip(np.floor(corners.min(axis=1) * self.grid).astype(np.int64), 0, self.grid - 1)
        high = np.clip(np.floor(corners.max(axis=1) * self.grid).astype(np.int64), 0, self.grid - 1)
        # Every (cell, face) pair of the faces' bounding boxes, enumerated without a Python loop.
        columns, rows = high[:, 0] - low[:, 0] + 1, high[:, 1] - low[:, 1] + 1
        owners = np.repeat(np.arange(len(faces)), columns * rows)
        rank = np.arange(owners.size) - np.repeat(np.cumsum(columns * rows) - columns * rows, columns * rows)
        cells = (low[owners, 1] + rank // columns[owners]) * self.grid + low[owners, 0] + rank % columns[owners]
        order = np.argsort(cells, kind="stable")
        cell_start = np.searchsorted(cells[order], np.arange(self.grid * self.grid + 1))
        vertices, first_use = np.unique(self.charts.faces[faces].reshape(-1), return_index=True)
        return _PartIndex(faces, corners, inverse, cell_start, owners[order], vertices, cKDTree(self.charts.uv[vertices]),
                          faces[first_use // 3])

    def locate(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> SurfacePoints:
        """Points given as equal-shaped arrays of part (0..24) and U, V; the result is flat (N = size)."""
        parts = np.asarray(parts).reshape(-1).astype(np.int64)
        points = np.stack([np.asarray(u, np.float64).reshape(-1), np.asarray(v, np.float64).reshape(-1)], axis=1)
        face = np.full(parts.shape, -1, np.int64)
        weights = np.zeros((parts.size, 3))
        vertex = np.full(parts.shape, -1, np.int64)
        inside = np.zeros(parts.shape, bool)
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(NUM_PARTS + 2))
        for part in PARTS:
            index = self._parts[part]
            for start in range(bounds[part], bounds[part + 1], CHUNK):
                rows = order[start : min(start + CHUNK, bounds[part + 1])]
                face[rows], weights[rows], inside[rows] = self._locate_in_part(index, points[rows])
                nearest = index.vertex_tree.query(points[rows], workers=-1)[1]
                vertex[rows] = self.charts.smpl_vertex[index.vertices[nearest]]
                # Outside the chart: at the nearest chart vertex, as DensePose's own IUV -> face code does.
                outside = rows[~inside[rows]]
                face[outside] = index.vertex_face[nearest[~inside[rows]]]
                weights[outside] = self.charts.faces[face[outside]] == index.vertices[nearest[~inside[rows]], None]
        return SurfacePoints(face, weights, vertex, inside)

    def _locate_in_part(self, index: _PartIndex, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face, weights, found) of points of one part: each point tries its cell's faces in turn,
        all unresolved points at once, until one holds it or none is left."""
        grid = self.grid
        cell_xy = np.clip(np.floor(points * grid).astype(np.int64), 0, grid - 1)
        cell = cell_xy[:, 1] * grid + cell_xy[:, 0]
        start, count = index.cell_start[cell], index.cell_start[cell + 1] - index.cell_start[cell]
        chosen = np.zeros(len(points), np.int64)
        weights = np.zeros((len(points), 3))
        found = np.zeros(len(points), bool)
        pending = np.flatnonzero(count > 0)
        slot = 0
        while pending.size:
            candidates = index.cell_faces[start[pending] + slot]
            trial = _barycentric(index, candidates, points[pending])
            holds = (trial >= -EPSILON).all(axis=1)
            chosen[pending[holds]], weights[pending[holds]], found[pending[holds]] = candidates[holds], trial[holds], True
            slot += 1
            pending = pending[~holds & (count[pending] > slot)]
        return index.faces[chosen], weights, found


def _barycentric(index: _PartIndex, candidates: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n, 3) weights of each point in its candidate face (NaN for a degenerate face)."""
    origin = index.corners[candidates, 0]
    dx, dy = points[:, 0] - origin[:, 0], points[:, 1] - origin[:, 1]
    inverse = index.inverse[candidates]  # (n, 2, 2)
    second = inverse[:, 0, 0] * dx + inverse[:, 0, 1] * dy
    third = inverse[:, 1, 0] * dx + inverse[:, 1, 1] * dy
    return np.stack([1.0 - second - third, second, third], axis=1)
