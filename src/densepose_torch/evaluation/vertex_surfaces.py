"""Body surfaces made of UV-unwrapped mesh vertices (they satisfy `surface.BodySurface`).

A chart point (part I, U, V) is mapped to the vertex of part I closest to it in (U, V); GPS then
needs the geodesic distance between two such vertices. `SmplGeodesicSurface` is the official
evaluator's subdivided SMPL with its condensed distance table; `DenseGeodesicSurface` holds a
full distance matrix, for small meshes.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from ..definitions import PARTS


class ChartVertices:
    """Vertices of a UV-unwrapped body mesh: the part (1..24) and (U, V) of each."""

    def __init__(self, parts: np.ndarray, uv: np.ndarray):
        self.parts = np.asarray(parts).reshape(-1).astype(np.int64)
        self.uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if self.uv.shape[0] != self.parts.shape[0]:
            raise ValueError(f"{self.parts.shape[0]} part ids for {self.uv.shape[0]} (U, V) pairs")
        # Vertex indices of each part, in ascending order: argmin then keeps the official tie
        # rule (the first closest vertex in mesh order).
        self._by_part = {part: np.flatnonzero(self.parts == part) for part in PARTS}

    def __len__(self) -> int:
        return int(self.parts.shape[0])

    def nearest(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Index of the closest vertex of the point's part in (U, V) (Euclidean, as scipy's
        cdist computes it), -1 where the part has no vertex."""
        parts = np.asarray(parts).reshape(-1).astype(np.int64)
        points = np.stack([np.asarray(u, np.float64).reshape(-1), np.asarray(v, np.float64).reshape(-1)], axis=1)
        nearest = np.full(parts.shape, -1, np.int64)
        order = np.argsort(parts, kind="stable")
        present, starts = np.unique(parts[order], return_index=True)
        for part, start, stop in zip(present, starts, [*starts[1:], parts.size]):
            candidates = self._by_part.get(int(part))
            if candidates is None or candidates.size == 0:
                continue
            selected = order[start:stop]
            distances = cdist(self.uv[candidates], points[selected])
            nearest[selected] = candidates[np.argmin(distances, axis=0)]
        return nearest


class DenseGeodesicSurface:
    """A surface whose geodesic distances are a full (N, N) matrix over its vertices."""

    def __init__(self, vertices: ChartVertices, distances: np.ndarray):
        distances = np.asarray(distances, dtype=np.float64)
        if distances.shape != (len(vertices), len(vertices)):
            raise ValueError(f"distance matrix {distances.shape} for {len(vertices)} vertices")
        self.vertices, self.distances = vertices, distances

    def nearest_vertices(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.vertices.nearest(parts, u, v)

    def geodesic_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        return np.where(a == b, 0.0, self.distances[a, b])


def condensed_index(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Row of `Pdist_matrix` holding the distance between mesh vertices i > j (0-based).

    The official lookup (getDistancesUV) reverses both indices (i' = n-1-i), takes the
    upper-triangle condensed index of (i', j') and reverses that (N-1-k); the n terms cancel,
    leaving the row-major lower-triangle index i(i-1)/2 + j."""
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    return i * (i - 1) // 2 + j


class SmplGeodesicSurface:
    """The official GPS surface: the subdivided SMPL of `SMPL_subdiv.mat` for the nearest-vertex
    search, `SMPL_SUBDIV_TRANSFORM.mat` mapping its vertices to the mesh of the distance table
    (UV-seam duplicates share a mesh vertex), and the condensed table `Pdist_matrix`."""

    def __init__(self, vertices: ChartVertices, mesh_index: np.ndarray, pairwise: np.ndarray):
        self.vertices = vertices
        self.mesh_index = np.asarray(mesh_index).reshape(-1).astype(np.int64)  # 0-based
        self.pairwise = pairwise.reshape(-1)  # a view: stays memory-mapped
        # n(n-1)/2 rows -> n mesh vertices (27554 for the official table).
        self.mesh_size = int(round((1 + np.sqrt(1 + 8 * self.pairwise.shape[0])) / 2))
        if self.mesh_size * (self.mesh_size - 1) // 2 != self.pairwise.shape[0]:
            raise ValueError(f"{self.pairwise.shape[0]} distances is not n(n-1)/2 for any n")
        if self.mesh_index.shape[0] != len(vertices):
            raise ValueError(f"{self.mesh_index.shape[0]} mesh indices for {len(vertices)} vertices")
        if self.mesh_index.size and (self.mesh_index.min() < 0 or self.mesh_index.max() >= self.mesh_size):
            raise ValueError(f"mesh indices outside 1..{self.mesh_size}")

    def nearest_vertices(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.vertices.nearest(parts, u, v)

    def geodesic_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        i, j = self.mesh_index[np.asarray(a, np.int64)], self.mesh_index[np.asarray(b, np.int64)]
        high, low = np.maximum(i, j), np.minimum(i, j)
        distances = np.zeros(high.shape, np.float64)
        apart = high != low
        distances[apart] = self.pairwise[condensed_index(high[apart], low[apart])]
        return distances
