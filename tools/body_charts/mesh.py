"""Triangle-mesh topology: edges, adjacency, boundary loops, cyclic runs (numpy/scipy only).

Faces are (F, 3) integer arrays of vertex indices; `n` is the number of vertices.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def half_edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges of every face, in face orientation: all (0, 1), then (1, 2), then
    (2, 0) corners."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) undirected edges, each as (smaller, larger) vertex, sorted."""
    return np.unique(np.sort(half_edges(faces), axis=1), axis=0)


def vertex_graph(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) symmetric 0/1 adjacency of vertices joined by an edge."""
    e = half_edges(faces)
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    return ((g + g.T) > 0).astype(np.float64)


def face_adjacency(faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge: (face_a, face_b, vertex_u, vertex_v), each (P,).

    Border edges (one face) give no pair. On a manifold mesh each interior edge gives one pair;
    the stable sort keeps the order reproducible."""
    half = half_edges(faces)
    owner = np.tile(np.arange(len(faces)), 3)
    key = np.minimum(half[:, 0], half[:, 1]) * n + np.maximum(half[:, 0], half[:, 1])
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.nonzero(ks[1:] == ks[:-1])[0]
    fa, fb = owner[order][first], owner[order][first + 1]
    edge = half[order][first]
    return fa, fb, edge[:, 0], edge[:, 1]


def border_vertex_mask(faces: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: vertices on an edge that only one of `faces` uses."""
    half = half_edges(faces)
    key = np.minimum(half[:, 0], half[:, 1]) * n + np.maximum(half[:, 0], half[:, 1])
    keys, counts = np.unique(key, return_counts=True)
    mask = np.zeros(n, dtype=bool)
    mask[np.concatenate([keys[counts == 1] // n, keys[counts == 1] % n])] = True
    return mask


def euler_characteristic(faces: np.ndarray) -> int:
    """V - E + F of the vertices and edges the faces use (1 for a disk, 0 for an open tube)."""
    v = np.unique(faces).size
    return v - len(unique_edges(faces)) + len(faces)


def boundary_loop(faces: np.ndarray) -> np.ndarray:
    """(B,) vertices of the single boundary loop of a disk-like triangle set, in the order that
    follows the faces' orientation (counter-clockwise seen from the side the normals face),
    starting at the smallest vertex index. Raises ValueError when the border is not one simple
    loop (several loops, or a vertex where the border touches itself)."""
    as_set = {(int(a), int(b)) for a, b in half_edges(faces)}
    # A directed edge whose reverse no face uses lies on the border.
    border = [(a, b) for a, b in as_set if (b, a) not in as_set]
    if not border:
        raise ValueError("the faces have no boundary")
    nxt: dict[int, int] = {}
    for a, b in border:
        if a in nxt:
            raise ValueError("boundary is not a simple loop")
        nxt[a] = b
    start = min(nxt)
    loop = [start]
    while nxt[loop[-1]] != start:
        loop.append(nxt[loop[-1]])
        if len(loop) > len(nxt):
            raise ValueError("boundary is not a simple loop")
    if len(loop) != len(nxt):
        raise ValueError(f"{len(nxt) - len(loop)} boundary edges outside the main loop")
    return np.array(loop)


def cyclic_runs(classes: np.ndarray) -> list[tuple[int, int, object]]:
    """Maximal runs of equal values along a cyclic sequence (N,): (start, length, value), a run
    may wrap past the end. A constant sequence is one run starting at 0."""
    n = len(classes)
    starts = [i for i in range(n) if classes[i] != classes[i - 1]]
    if not starts:
        return [(0, n, classes[0])]
    out = []
    for k, s in enumerate(starts):
        e = starts[(k + 1) % len(starts)]
        out.append((s, (e - s) % n or n, classes[s]))
    return out
