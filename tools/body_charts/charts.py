"""One UV chart per DensePose part: each part of the person's right side (and each torso half)
is a topological disk mapped onto the unit square; left parts are exact mirror copies.

Chart orientation: torso and limbs have U along the body (0 at the top / proximal end, 1 at the
bottom / distal end) and V across (limbs: 0 at the lateral seam, 1 at the medial one; torso: 1 on
the person's right, 0 on their left). Head halves: U from the back (0) to the face (1), V from
the neck (0) to the crown (1). Hands and feet: the wrist/ankle loop goes round the square,
starting at the front (palm) / back seam on the thumb / big-toe side.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from densepose_torch.definitions import (
    FINE_TO_COARSE,
    PART_NAMES,
    PART_SYMMETRY,
    PARTS,
    SELF_SYMMETRIC_PARTS,
)

from .body import Body
from .mesh import boundary_loop, cyclic_runs, euler_characteristic, face_adjacency
from .parts import LIMB_AXES, region, region_limb, region_parts
from .uv_maps import Corner, square_boundary, stretch_minimised_map

SQUARE: list[Corner] = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
# Parts whose chart is computed; every other part is the mirror image of one of them.
CHARTED_PARTS = tuple(p for p in PARTS if p in SELF_SYMMETRIC_PARTS or "right" in PART_NAMES[p].split())
SIBLING = "S"  # neighbour class of the other half of the same region
MIN_RUN = 0.01  # metres: shorter runs of one neighbour along a torso border are jagged seams


def build_charts(body: Body, part: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """UV of every (vertex, part) corner for the faces' parts `part` (F,): chart_vertex (C,),
    chart_part (C,), chart_uv (C, 2) in [0, 1], and face_chart (F, 3) indices into them. Chart
    corners are sorted by (vertex, part)."""
    rest, faces = body.rest, body.faces
    fa, fb, eu, ev = face_adjacency(faces, len(rest))
    # The two faces on either side of each edge, keyed by its sorted vertex pair.
    across = {(min(u, v), max(u, v)): (a, b) for a, b, u, v in zip(fa.tolist(), fb.tolist(), eu.tolist(), ev.tolist())}
    eye_face = body.eye[faces].all(axis=1)
    uv_of: dict[tuple[int, int], np.ndarray] = {}  # (vertex, part) -> uv
    for p in CHARTED_PARTS:
        verts, uv = _part_chart(body, part, p, eye_face, across)
        for vi, vuv in zip(verts, uv):
            uv_of[(int(vi), p)] = vuv
    # Torso halves are their own mirror image: V -> 1 - V. Make that exact.
    for p in SELF_SYMMETRIC_PARTS:
        keys = [k for k in uv_of if k[1] == p]
        sym = {k: 0.5 * (uv_of[k] + np.array([uv_of[(int(body.mirror[k[0]]), p)][0],
                                              1.0 - uv_of[(int(body.mirror[k[0]]), p)][1]]))
               for k in keys}
        uv_of.update(sym)
    # Left parts are mirror copies of right parts.
    for (v, p), value in list(uv_of.items()):
        q = PART_SYMMETRY[p]
        if q != p:
            uv_of[(int(body.mirror[v]), q)] = value
    # Eyeballs take the UV of the nearest skin vertex of their part.
    for p in sorted(region_parts(region("head")).values()):
        keys = [k for k in uv_of if k[1] == p]
        skin = np.array([k[0] for k in keys])
        tree = cKDTree(rest[skin])
        eye_verts = np.unique(faces[eye_face & (part == p)])
        _, nearest = tree.query(rest[eye_verts])
        for vi, j in zip(eye_verts, nearest):
            uv_of[(int(vi), p)] = uv_of[(int(skin[j]), p)]
    keys = sorted(uv_of)
    index = {k: i for i, k in enumerate(keys)}
    chart_vertex = np.array([k[0] for k in keys])
    chart_part = np.array([k[1] for k in keys])
    chart_uv = np.clip(np.array([uv_of[k] for k in keys]), 0.0, 1.0)
    face_chart = np.array([[index[(int(v), int(part[f]))] for v in faces[f]] for f in range(len(faces))])
    return chart_vertex, chart_part, chart_uv, face_chart


def _part_chart(body: Body, part: np.ndarray, p: int, eye_face: np.ndarray,
                across: dict[tuple[int, int], tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Mesh vertices (N,) of part p's skin (eyeballs left out) and their UV (N, 2)."""
    faces = body.faces
    sel = np.nonzero((part == p) & ~eye_face)[0]
    verts, local = np.unique(faces[sel], return_inverse=True)
    local = local.reshape(-1, 3)
    chi = euler_characteristic(local)
    assert chi == 1, f"part {p} is not a disk (Euler characteristic {chi})"
    loop = boundary_loop(local)
    # The part on the other side of each boundary edge.
    neighbour = []
    for k in range(len(loop)):
        u, v = verts[loop[k]], verts[loop[(k + 1) % len(loop)]]
        face_a, face_b = across[(min(u, v), max(u, v))]
        other = face_b if part[face_a] == p else face_a
        neighbour.append(int(part[other]))
    pos = body.rest[verts]
    corners, square = _corners(p, pos, loop, np.array(neighbour), body)
    boundary_uv = square_boundary(pos, loop, corners, square)
    return verts, stretch_minimised_map(pos, local, loop, boundary_uv)


def _corners(p: int, pos: np.ndarray, loop: np.ndarray, neighbour: np.ndarray,
             body: Body) -> tuple[list[int], list[Corner]]:
    """Four indices into `loop` (B,) that go to the square's corners, in loop order, and the
    (U, V) of those corners; `neighbour` (B,) is the part across each boundary edge."""
    r = int(FINE_TO_COARSE[p])
    limb, side = region_limb(r)
    sibling = set(region_parts(r).values()) - {p}
    cls = np.array([(SIBLING if q in sibling else int(FINE_TO_COARSE[q])) for q in neighbour], dtype=object)
    seg = np.linalg.norm(pos[loop] - pos[np.roll(loop, -1)], axis=1)
    if limb in ("hand", "foot"):
        return _hand_foot_corners(loop, neighbour, seg, side)
    if limb == "head":
        return _head_corners(pos, loop, cls, seg)
    if limb == "torso":
        return _torso_corners(pos, loop, cls, seg)
    return _limb_corners(pos, loop, cls, seg, body, limb, side)


def _hand_foot_corners(loop: np.ndarray, neighbour: np.ndarray, seg: np.ndarray, side: str) -> tuple[list[int], list[Corner]]:
    """The wrist / ankle loop has two arcs (the front and back halves of the forearm or shin);
    corners at their ends and midpoints, the first where the front arc starts."""
    arcs = _merge_small_runs(np.array(neighbour, dtype=object), seg, 2)
    (s0, n0, c0), (s1, n1, _) = arcs
    fronts = {region_parts(region(limb, side))["front"] for limb in ("lower arm", "lower leg")}
    front_first = c0 in fronts
    mids = [(s0 + n0 // 2) % len(loop), (s1 + n1 // 2) % len(loop)]
    corners = sorted([s0, mids[0], s1, mids[1]])
    start = s0 if front_first else s1
    k = corners.index(start)
    return corners[k:] + corners[:k], SQUARE


def _head_corners(pos: np.ndarray, loop: np.ndarray, cls: np.ndarray, seg: np.ndarray) -> tuple[list[int], list[Corner]]:
    """The head half's border: the neck arc and the mid-sagittal arc (shared with the other
    half). Corners at the ends of the mid arc (front of the neck, back of the neck) and at the
    points of it towards the brow and the back of the crown."""
    arcs = _merge_small_runs(cls, seg, 2)
    (sa, na, ca), (sb, nb, _) = arcs
    mid_start, mid_len = (sa, na) if ca == SIBLING else (sb, nb)
    mid_idx = [(mid_start + t) % len(loop) for t in range(mid_len + 1)]
    ends = [mid_idx[0], mid_idx[-1]]
    front_end, back_end = sorted(ends, key=lambda i: pos[loop[i], 1])  # -Y is the face
    centre = pos[loop[mid_idx]].mean(axis=0)

    def closest(direction: np.ndarray) -> int:
        d = pos[loop[mid_idx]] - centre
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return mid_idx[int(np.argmax(d @ direction))]

    brow = closest(np.array([0.0, -1.0, 1.0]) / np.sqrt(2))
    crown_back = closest(np.array([0.0, 1.0, 1.0]) / np.sqrt(2))
    order = [front_end, brow, crown_back, back_end]
    uvs = [(1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    return _orient(order, uvs)


def _torso_corners(pos: np.ndarray, loop: np.ndarray, cls: np.ndarray, seg: np.ndarray) -> tuple[list[int], list[Corner]]:
    """Torso half: corners at the middle of each armhole arc and at the outer end of each
    leg-hole arc."""
    arcs = _merge_small_runs(cls, seg, None)
    arm_mid = {}
    leg_outer = {}
    arms = {region("upper arm", s) for s in ("L", "R")}
    legs = {region("upper leg", s) for s in ("L", "R")}
    for s, ln, c in arcs:
        idx = [(s + t) % len(loop) for t in range(ln + 1)]
        if c in arms:
            lengths = np.concatenate([[0], np.cumsum(seg[idx[:-1]])])
            arm_mid[c] = idx[int(np.searchsorted(lengths, lengths[-1] / 2))]
        if c in legs:
            ends = [idx[0], idx[-1]]
            leg_outer[c] = max(ends, key=lambda i: abs(pos[loop[i], 0]))
    order = [arm_mid[region("upper arm", "R")], arm_mid[region("upper arm", "L")],
             leg_outer[region("upper leg", "L")], leg_outer[region("upper leg", "R")]]
    uvs = [(0.0, 1.0), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]
    return _orient(order, uvs)


def _limb_corners(pos: np.ndarray, loop: np.ndarray, cls: np.ndarray, seg: np.ndarray, body: Body,
                  limb: str, side: str) -> tuple[list[int], list[Corner]]:
    """Limb half: its border is the proximal arc, a seam, the distal arc and the other seam;
    corners where they meet, U = 0 at the proximal arc, V = 0 at the lateral seam."""
    arcs = _merge_small_runs(cls, seg, 4)
    proximal = region("torso") if limb.startswith("upper") else region(limb.replace("lower", "upper"), side)
    prox = next(a for a in arcs if a[2] == proximal)
    dist = next(a for a in arcs if a[2] not in (proximal, SIBLING))
    seams = [a for a in arcs if a[2] == SIBLING]
    assert len(seams) == 2, (limb, side, [(a[1], a[2]) for a in arcs])
    prox_joint, dist_joint = LIMB_AXES[limb]
    ja, jb = body.joint(prox_joint, side), body.joint(dist_joint, side)
    axis = (jb - ja) / np.linalg.norm(jb - ja)
    outward = np.array([1.0 if side == "L" else -1.0, 0.0, 0.0])
    lateral = outward - axis * (outward @ axis)

    def seam_score(a: tuple[int, int, object]) -> float:
        idx = [(a[0] + t) % len(loop) for t in range(a[1] + 1)]
        return (pos[loop[idx]] - ja).mean(axis=0) @ lateral

    def shared(a: tuple[int, int, object], b: tuple[int, int, object]) -> int:
        a_end, b_end = (a[0] + a[1]) % len(loop), (b[0] + b[1]) % len(loop)
        if a_end == b[0]:
            return b[0]
        if b_end == a[0]:
            return a[0]
        raise AssertionError("arcs do not touch")

    lat_seam = max(seams, key=seam_score)
    med_seam = next(s for s in seams if s is not lat_seam)
    order = [shared(prox, lat_seam), shared(lat_seam, dist), shared(dist, med_seam), shared(med_seam, prox)]
    uvs = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    return _orient(order, uvs)


def _orient(order: list[int], uvs: list[Corner]) -> tuple[list[int], list[Corner]]:
    """The corners sorted into loop order, each with its UV."""
    pairs = sorted(zip(order, uvs))
    corners = [c for c, _ in pairs]
    square = [u for _, u in pairs]
    assert len(set(corners)) == 4, corners
    return corners, square


def _merge_small_runs(cls: np.ndarray, seg: np.ndarray, want: int | None) -> list[tuple[int, int, object]]:
    """Runs of neighbour classes along the loop (B,) with edge lengths seg (B,); the shortest
    run (a jagged seam) merges into the run before it until `want` runs remain (want=None: until
    none is shorter than MIN_RUN)."""
    cls = cls.copy()
    while True:
        r = cyclic_runs(cls)
        lengths = [seg[[(s + t) % len(cls) for t in range(ln)]].sum() for s, ln, _ in r]
        if want is not None and len(r) <= want:
            return r
        k = int(np.argmin(lengths))
        if want is None and lengths[k] >= MIN_RUN:
            return r
        s, ln, _ = r[k]
        prev = r[k - 1][2]
        for t in range(ln):
            cls[(s + t) % len(cls)] = prev
