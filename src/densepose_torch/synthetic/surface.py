"""The synthetic body as a GPS surface (`evaluation.surface.BodySurface`): chart point -> nearest
skin vertex of its part in (U, V), and geodesic distances on the rest-pose mesh.

Geodesics are shortest paths on the mesh's edge graph, refined with one "unfolded" edge across
every pair of adjacent triangles (the straight line between their opposite corners when the two
triangles are laid flat, where it crosses the shared edge): still a path on the surface, so a
distance is never below the Euclidean one, and much closer to the true geodesic than edges alone.
Rows (all distances from one vertex) are computed on demand with Dijkstra and kept in memory.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ..definitions import PARTS
from .body import BodyModel, load_body


class AnnySurface:
    """GPS surface of the synthetic (anny) body; `cache_rows` bounds the memory of cached
    geodesic rows (each row is 4 bytes per vertex, about 54 kB)."""

    def __init__(self, body: BodyModel | None = None, cache_rows: int = 4096):
        body = body if body is not None else load_body()
        skin = ~body.eye_vertex[body.chart_vertex]
        self._vertex = body.chart_vertex[skin]
        self._trees: dict[int, tuple[cKDTree, np.ndarray]] = {}
        for part in PARTS:
            sel = np.flatnonzero(body.chart_part[skin] == part)
            self._trees[part] = (cKDTree(body.chart_uv[skin][sel].astype(np.float64)), self._vertex[sel])
        skin_faces = body.faces[~body.eye_vertex[body.faces].any(axis=1)]
        self.graph = surface_graph(body.rest_vertices.astype(np.float64), skin_faces)
        self.vertices = body.rest_vertices
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_rows = max(1, int(cache_rows))

    def nearest_vertices(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        parts = np.asarray(parts).reshape(-1).astype(np.int64)
        points = np.stack([np.asarray(u, np.float64).reshape(-1), np.asarray(v, np.float64).reshape(-1)], axis=1)
        out = np.full(parts.shape, -1, dtype=np.int64)
        for part in np.unique(parts):
            if part not in self._trees:
                continue
            sel = parts == part
            tree, vertex = self._trees[int(part)]
            _, nearest = tree.query(points[sel])
            out[sel] = vertex[nearest]
        return out

    def geodesic_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.int64).reshape(-1)
        b = np.asarray(b, dtype=np.int64).reshape(-1)
        if a.shape != b.shape:
            raise ValueError(f"{a.size} sources for {b.size} targets")
        out = np.zeros(a.shape, dtype=np.float64)
        if a.size == 0:
            return out
        # Rows are per source vertex: take the side needing fewer new Dijkstra runs as source.
        missing_a = len(set(np.unique(a).tolist()) - self._rows.keys())
        missing_b = len(set(np.unique(b).tolist()) - self._rows.keys())
        source, target = (a, b) if missing_a <= missing_b else (b, a)
        for vertex in np.unique(source):
            sel = source == vertex
            out[sel] = self.distance_row(int(vertex))[target[sel]]
        out[a == b] = 0.0
        return out

    def distance_row(self, vertex: int) -> np.ndarray:
        """Geodesic distances (metres, float32) from one vertex to every vertex."""
        row = self._rows.get(vertex)
        if row is None:
            row = dijkstra(self.graph, directed=False, indices=vertex).astype(np.float32)
            self._rows[vertex] = row
            if len(self._rows) > self._cache_rows:
                self._rows.popitem(last=False)
        else:
            self._rows.move_to_end(vertex)
        return row


def load_surface() -> AnnySurface:
    """The GPS surface of the synthetic body shipped with the package."""
    return AnnySurface()


def surface_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Symmetric sparse graph: mesh edges plus unfolded edges across adjacent triangle pairs."""
    n = len(vertices)
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    opposite = np.concatenate([faces[:, 2], faces[:, 0], faces[:, 1]])
    key = np.minimum(half[:, 0], half[:, 1]) * n + np.maximum(half[:, 0], half[:, 1])
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.flatnonzero(ks[1:] == ks[:-1])
    u, w = half[order][first, 0], half[order][first, 1]
    p, q = opposite[order][first], opposite[order][first + 1]
    edge = vertices[w] - vertices[u]
    length = np.linalg.norm(edge, axis=1)
    axis = edge / length[:, None]

    def flat(point):
        rel = vertices[point] - vertices[u]
        along = (rel * axis).sum(axis=1)
        across = np.linalg.norm(rel - along[:, None] * axis, axis=1)
        return along, across

    xp, yp = flat(p)
    xq, yq = flat(q)
    # p sits above the edge, q below it once unfolded; the segment p-q crosses the edge's line
    # at x = xp + (xq - xp) * yp / (yp + yq), which must lie on the edge.
    t = yp / np.maximum(yp + yq, 1e-12)
    cross_x = xp + (xq - xp) * t
    valid = (cross_x > 0) & (cross_x < length)
    unfolded = np.hypot(xp - xq, yp + yq)

    all_edges = np.unique(np.sort(half, axis=1), axis=0)
    edge_len = np.linalg.norm(vertices[all_edges[:, 0]] - vertices[all_edges[:, 1]], axis=1)
    a = np.concatenate([all_edges[:, 0], np.minimum(p, q)[valid]])
    b = np.concatenate([all_edges[:, 1], np.maximum(p, q)[valid]])
    length = np.concatenate([edge_len, unfolded[valid]])
    # The shortest of duplicate connections (an unfolded pair can also be a mesh edge).
    order = np.lexsort((length, b, a))
    a, b, length = a[order], b[order], length[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, length = a[first], b[first], length[first]
    return sp.csr_matrix((np.concatenate([length, length]), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
