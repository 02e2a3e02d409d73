"""DensePose part segmentation of the body mesh: one part (1..24) per face.

Regions are DensePose's coarse parts (ids, names and fine halves from
`densepose_torch.definitions`). Each face first gets a region from the skinning weights, with
elbows, wrists, knees and ankles cut by planes; each region then splits into its fine halves
(front/back along seams that follow mesh edges, the head at the mid-sagittal plane), and the
person's left half is made the mirror image of the right.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from densepose_torch.definitions import (
    COARSE_PART_NAMES,
    FINE_TO_COARSE,
    NUM_COARSE_PARTS,
    NUM_PART_LABELS,
    PART_NAMES,
    PART_SYMMETRY,
    PARTS,
)
from densepose_torch.synthetic.body import FORWARD

from .body import Body
from .mesh import border_vertex_mask, face_adjacency, unique_edges, vertex_graph
from .skeleton import KEPT_JOINTS

SIDE_WORDS = {"L": "left", "R": "right"}  # rig suffix -> the word in DensePose's part names

# Limb regions: the bone along the limb, (proximal joint, distal joint).
LIMB_AXES = {
    "upper arm": ("upperarm01", "lowerarm01"), "lower arm": ("lowerarm01", "wrist"),
    "upper leg": ("upperleg01", "lowerleg01"), "lower leg": ("lowerleg01", "foot"),
}
# Region of a joint's skinning weight (by the joint's base name); neck, head and fingers below.
JOINT_LIMBS = {"upperarm01": "upper arm", "lowerarm01": "lower arm", "lowerarm02": "lower arm", "wrist": "hand",
               "upperleg01": "upper leg", "lowerleg01": "lower leg", "foot": "foot"}
HEAD_JOINTS = ("neck01", "neck02", "neck03", "head")

# Limb joints whose region boundary is the plane through the joint across the limb:
# (proximal limb, distal limb, joint, joint before, joint after; None: straight on).
JOINT_PLANES = [
    ("upper arm", "lower arm", "lowerarm01", "upperarm01", "wrist"),
    ("lower arm", "hand", "wrist", "lowerarm01", "finger3-1"),
    ("upper leg", "lower leg", "lowerleg01", "upperleg01", "foot"),
    ("lower leg", "foot", "foot", "lowerleg01", None),
]

DIFFUSION_STEPS = 80  # smoothing of the region weights before the argmax (smooth boundaries)
SEAM_STIFFNESS = 8.0  # how strongly a seam path prefers its ideal line over a shorter route


# --------------------------------------------------------------------------------------------
# regions and halves, from the DensePose part table


def region(limb: str, side: str = "") -> int:
    """Coarse part id of a body region: region("torso"), region("upper arm", "R")."""
    return COARSE_PART_NAMES.index(f"{SIDE_WORDS[side]} {limb}" if side else limb)


def region_limb(r: int) -> tuple[str, str]:
    """(limb, side) of coarse part id r: ("upper arm", "R"), or ("torso", "") when unsided."""
    name = COARSE_PART_NAMES[r]
    for side, word in SIDE_WORDS.items():
        if name.startswith(word + " "):
            return name[len(word) + 1:], side
    return name, ""


def part_half(p: int) -> str:
    """Which half of its coarse part fine part p is ("front", "back", "left", "right"), or ""
    when the fine part is the whole coarse part (hands, feet)."""
    whole, name = COARSE_PART_NAMES[FINE_TO_COARSE[p]], PART_NAMES[p]
    if name == whole:
        return ""
    assert name.startswith(whole + " "), (name, whole)
    return name[len(whole) + 1:]


def region_parts(r: int) -> dict[str, int]:
    """Fine parts of coarse part r by half: {"back": 7, "front": 9}, or {"": 3}."""
    return {part_half(p): p for p in PARTS if FINE_TO_COARSE[p] == r}


def joint_region(joint: str) -> int:
    """Coarse part that a kept joint's skinning weight votes for."""
    base, _, side = joint.partition(".")
    if base in HEAD_JOINTS:
        return region("head")
    if base in JOINT_LIMBS:
        return region(JOINT_LIMBS[base], side)
    if base.startswith("finger"):
        return region("hand", side)
    return region("torso")  # spine, root, clavicles


# --------------------------------------------------------------------------------------------
# segmentation


def segment_parts(body: Body) -> np.ndarray:
    """(F,) int64 fine DensePose part (1..24) of every face."""
    rest, faces = body.rest, body.faces
    n = len(rest)
    fa, fb, eu, ev = face_adjacency(faces, n)
    edge_len = np.linalg.norm(rest[eu] - rest[ev], axis=1)
    eyes = body.eye[faces].all(axis=1)
    face_region = _cut_joints_by_planes(body, _skinning_regions(body))
    face_region = straighten_labels(face_region, NUM_COARSE_PARTS + 1, fa, fb, edge_len)
    face_region = keep_largest_components(face_region, NUM_COARSE_PARTS + 1, fa, fb, edge_len, skip=eyes)

    centroid = rest[faces].mean(axis=1)
    part = np.zeros(len(faces), dtype=np.int64)
    for r in range(1, NUM_COARSE_PARTS + 1):
        sel = face_region == r
        halves = region_parts(r)
        limb, _ = region_limb(r)
        if "" in halves:
            part[sel] = halves[""]
            continue
        if limb == "head":
            part[sel] = np.where(centroid[sel, 0] < 0, halves["right"], halves["left"])
            continue
        if limb == "torso":
            front = _torso_front(rest, faces, np.flatnonzero(sel), face_region)
        else:
            front = _limb_front(body, r, np.flatnonzero(sel), face_region)
        part[sel] = np.where(front, halves["front"], halves["back"])
    # The halves of a region only trade faces with each other.
    part = straighten_labels(part, NUM_PART_LABELS, fa, fb, edge_len, group=FINE_TO_COARSE)
    part = keep_largest_components(part, NUM_PART_LABELS, fa, fb, edge_len, skip=eyes)
    return make_symmetric(part, faces, body.mirror, centroid)


def _skinning_regions(body: Body) -> np.ndarray:
    """(F,) coarse part with the largest summed skinning weight over the face's corners."""
    n = len(body.rest)
    region_weight = np.zeros((n, NUM_COARSE_PARTS + 1))  # column 0 (background) stays 0
    for j, name in enumerate(KEPT_JOINTS):
        region_weight[:, joint_region(name)] += body.weights[:, j]
    # Diffusing the region weights a little makes the argmax boundaries smooth curves.
    graph = vertex_graph(body.faces, n)
    step = sp.diags(1.0 / np.asarray(graph.sum(axis=1)).ravel()) @ graph
    for _ in range(DIFFUSION_STEPS):
        region_weight = 0.5 * region_weight + 0.5 * (step @ region_weight)
    return region_weight[body.faces].sum(axis=1).argmax(axis=1)


def _cut_joints_by_planes(body: Body, face_region: np.ndarray, reach: float = 0.15) -> np.ndarray:
    """(F,) regions with elbows, wrists, knees and ankles cut cleanly: faces of the two limb
    segments within `reach` metres of the joint take the side of the joint's plane (normal: the
    mean of the two bone directions), where skinning weights give a ragged cut."""
    centroid = body.rest[body.faces].mean(axis=1)
    out = face_region.copy()
    for upper, lower, at, before, after in JOINT_PLANES:
        for side in ("L", "R"):
            centre = body.joint(at, side)
            incoming = centre - body.joint(before, side)
            outgoing = body.joint(after, side) - centre if after else incoming
            normal = incoming / np.linalg.norm(incoming) + outgoing / np.linalg.norm(outgoing)
            normal /= np.linalg.norm(normal)
            a, b = region(upper, side), region(lower, side)
            sel = np.isin(face_region, (a, b)) & (np.linalg.norm(centroid - centre, axis=1) < reach)
            out[sel] = np.where((centroid[sel] - centre) @ normal > 0, b, a)
    return out


def straighten_labels(label: np.ndarray, n_labels: int, fa: np.ndarray, fb: np.ndarray, edge_len: np.ndarray,
                iterations: int = 30, group: np.ndarray | None = None) -> np.ndarray:
    """(F,) labels after an edge-length-weighted majority vote between adjacent faces (pairs
    fa, fb sharing an edge of length edge_len): removes the spikes that long thin triangles make
    along a label boundary (a curve-shortening flow). With `group` (label -> group id), a face
    only changes to a label of its own group."""
    label = label.copy()
    nf = len(label)
    for _ in range(iterations):
        score = np.zeros((nf, n_labels))
        np.add.at(score, (fa, label[fb]), edge_len)
        np.add.at(score, (fb, label[fa]), edge_len)
        best = score.argmax(axis=1)
        # A clear majority only, so that the vote cannot oscillate.
        change = score[np.arange(nf), best] > 0.6 * score.sum(axis=1)
        change &= best != label
        if group is not None:
            change &= group[best] == group[label]
        if not change.any():
            break
        label[change] = best[change]
    return label


def keep_largest_components(label: np.ndarray, n_labels: int, fa: np.ndarray, fb: np.ndarray,
                             edge_len: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """(F,) labels where the faces of a label outside its largest edge-connected piece have
    joined the neighbouring label they share most boundary with. Faces in `skip` (F,) bool (the
    eyeballs, separate pieces by nature) are left alone."""
    label = label.copy()
    nf = len(label)
    for _ in range(20):
        same = (label[fa] == label[fb]) & ~skip[fa] & ~skip[fb]
        g = sp.coo_matrix((np.ones(same.sum()), (fa[same], fb[same])), shape=(nf, nf))
        _, comp = connected_components(g, directed=False)
        stray = np.zeros(nf, dtype=bool)
        for lab in np.unique(label[~skip]):
            sel = (label == lab) & ~skip
            sizes = np.bincount(comp[sel])
            stray |= sel & (comp != sizes.argmax())
        if not stray.any():
            return label
        score = np.zeros((nf, n_labels))
        other = label[fa] != label[fb]
        np.add.at(score, (fa[other], label[fb][other]), edge_len[other])
        np.add.at(score, (fb[other], label[fa][other]), edge_len[other])
        movable = stray & (score.max(axis=1) > 0)
        label[movable] = score[movable].argmax(axis=1)
    raise RuntimeError("part labels did not settle into connected pieces")


def make_symmetric(part: np.ndarray, faces: np.ndarray, mirror: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """(F,) parts with the labels of the person's right half (centroid x < 0) copied onto the
    mirror faces, as their mirror parts. `mirror` (V,) maps each vertex to its mirror image; the
    mesh must be mirror-symmetric as a set of faces."""
    n = mirror.size

    def key(f: np.ndarray) -> np.ndarray:
        """(F,) an integer per face that does not depend on the order of its corners."""
        return (np.sort(f, axis=1) * np.array([n * n, n, 1])).sum(axis=1)

    fkey = key(faces)
    order = np.argsort(fkey)
    mirrored = order[np.searchsorted(fkey[order], key(mirror[faces]))]
    assert (fkey[mirrored] == key(mirror[faces])).all(), "the mesh is not mirror-symmetric"
    right = centroid[:, 0] < 0
    out = part.copy()
    out[mirrored[right]] = np.array(PART_SYMMETRY)[part[right]]
    return out


# --------------------------------------------------------------------------------------------
# front and back halves


def _seam_split(rest: np.ndarray, faces: np.ndarray, region_faces: np.ndarray,
                seams: list[tuple[int, int, np.ndarray]], front_score: np.ndarray) -> np.ndarray:
    """(R,) bool, True for the faces (region_faces, R) in front, after cutting the region along
    seam paths.

    Each seam is (source, target, deviation): mesh vertices on the region's border and a
    per-vertex (V,) cost of straying from the ideal seam line. The path is the shortest one on the
    region's edges with lengths scaled by 1 + SEAM_STIFFNESS * deviation^2, so it follows mesh
    edges (a clean boundary) close to the ideal line. The two largest pieces must fall on
    opposite sides of front_score (R,) (per face, > 0: front)."""
    n = len(rest)
    sub = faces[region_faces]
    edges = unique_edges(sub)
    border_vertex = border_vertex_mask(sub, n)
    length = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    cut = set()
    for source, target, deviation in seams:
        cost = length * (1.0 + SEAM_STIFFNESS * 0.5 * (deviation[edges[:, 0]] ** 2 + deviation[edges[:, 1]] ** 2))
        # Running along the region's border would not cut anything: make it very expensive.
        cost = np.where(border_vertex[edges[:, 0]] & border_vertex[edges[:, 1]], cost * 1000.0, cost)
        graph = sp.coo_matrix((cost, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
        _, pred = dijkstra(graph, directed=False, indices=source, return_predecessors=True)
        v = target
        assert pred[v] >= 0, "seam endpoints are not connected"
        while v != source:
            u = pred[v]
            cut.add((min(u, v), max(u, v)))
            v = u
    fa, fb, eu, ev = face_adjacency(sub, n)
    keep = np.array([(min(a, b), max(a, b)) not in cut for a, b in zip(eu, ev)], dtype=bool)
    g = sp.coo_matrix((np.ones(keep.sum()), (fa[keep], fb[keep])), shape=(len(sub), len(sub)))
    count, piece = connected_components(g, directed=False)
    # Crossing seams can cut off a sliver; each piece goes to the side its faces are on.
    front = np.array([front_score[piece == k].mean() > 0 for k in range(count)])
    sizes = np.bincount(piece, minlength=count)
    big = np.argsort(-sizes)[:2]
    assert count >= 2 and front[big[0]] != front[big[1]], f"seams did not split the region ({sizes})"
    if count > 2:
        print(f"  seam split: {count} pieces of sizes {sorted(sizes.tolist(), reverse=True)}")
    return front[piece]


def _torso_front(rest: np.ndarray, faces: np.ndarray, region_faces: np.ndarray, face_region: np.ndarray) -> np.ndarray:
    """(R,) bool front faces of the torso: seams over the shoulders, down the sides and through
    the crotch, near the torso's mid-depth (in Y) at each height."""
    verts = np.unique(faces[region_faces])
    z, y = rest[verts, 2], rest[verts, 1]
    bins = np.linspace(z.min(), z.max(), 40)
    which = np.clip(np.digitize(z, bins) - 1, 0, len(bins) - 2)
    mid = np.array([0.5 * (y[which == b].min() + y[which == b].max()) if (which == b).any() else np.nan
                    for b in range(len(bins) - 1)])
    centres = 0.5 * (bins[1:] + bins[:-1])
    ok = ~np.isnan(mid)

    def mid_at(zz: np.ndarray) -> np.ndarray:
        """The torso's mid-depth (Y) at heights zz."""
        return np.interp(zz, centres[ok], mid[ok])

    deviation = np.abs(rest[:, 1] - mid_at(rest[:, 2])) / 0.03  # in units of 3 cm

    loops = _border_vertices_by_neighbour(faces, region_faces, face_region, len(rest))

    def best(candidates: np.ndarray) -> int:
        return int(candidates[np.argmin(deviation[candidates])])

    seams = []
    for side, sign in (("L", 1.0), ("R", -1.0)):
        neck = loops[region("head")]
        neck = neck[rest[neck, 0] * sign > 0.005]
        arm = loops[region("upper arm", side)]
        leg = loops[region("upper leg", side)]
        arm_z = np.median(rest[arm, 2])
        leg_x = np.median(np.abs(rest[leg, 0]))
        seams.append((best(neck), best(arm[rest[arm, 2] > arm_z]), deviation))
        seams.append((best(arm[rest[arm, 2] <= arm_z]), best(leg[np.abs(rest[leg, 0]) > leg_x]), deviation))
    inner = {}
    for side in ("L", "R"):
        leg = loops[region("upper leg", side)]
        inner[side] = best(leg[np.abs(rest[leg, 0]) <= np.median(np.abs(rest[leg, 0]))])
    seams.append((inner["R"], inner["L"], deviation))
    centroid = rest[faces[region_faces]].mean(axis=1)
    return _seam_split(rest, faces, region_faces, seams, mid_at(centroid[:, 2]) - centroid[:, 1])


def _border_vertices_by_neighbour(faces: np.ndarray, region_faces: np.ndarray, face_region: np.ndarray,
                                  n: int) -> dict[int, np.ndarray]:
    """Vertices of the region's border, grouped by the region on the other side."""
    fa, fb, eu, ev = face_adjacency(faces, n)
    inside = np.zeros(len(faces), dtype=bool)
    inside[region_faces] = True
    out = {}
    crossing = inside[fa] != inside[fb]
    other = np.where(inside[fa], fb, fa)[crossing]
    verts = np.stack([eu[crossing], ev[crossing]], axis=1)
    for r in np.unique(face_region[other]):
        out[int(r)] = np.unique(verts[face_region[other] == r])
    return out


def _limb_front(body: Body, r: int, region_faces: np.ndarray, face_region: np.ndarray) -> np.ndarray:
    """(R,) bool front faces of limb region r: two seams along the limb, on its lateral and
    medial sides (the forearm's front is the palm side)."""
    rest, faces = body.rest, body.faces
    limb, side = region_limb(r)
    prox, dist = LIMB_AXES[limb]
    a, b = body.joint(prox, side), body.joint(dist, side)
    axis = (b - a) / np.linalg.norm(b - a)
    anterior = body.palm_normal(side) if limb == "lower arm" else FORWARD
    anterior = anterior - axis * (anterior @ axis)
    anterior /= np.linalg.norm(anterior)
    lateral = np.cross(axis, anterior)
    outward = np.array([1.0 if side == "L" else -1.0, 0.0, 0.0])
    lateral *= np.sign(lateral @ (outward - axis * (outward @ axis)))
    rel = rest - a
    angle = np.arctan2(rel @ lateral, rel @ anterior)  # +90 deg lateral, -90 deg medial
    along = rel @ axis / np.linalg.norm(b - a)
    loops = _border_vertices_by_neighbour(faces, region_faces, face_region, len(rest))
    border = np.unique(np.concatenate(list(loops.values())))
    near, far = border[along[border] < 0.5], border[along[border] >= 0.5]
    seams = []
    for target in (np.pi / 2, -np.pi / 2):
        deviation = np.abs(np.angle(np.exp(1j * (angle - target))))
        seams.append((int(near[np.argmin(deviation[near])]), int(far[np.argmin(deviation[far])]), deviation))
    centroid = rest[faces[region_faces]].mean(axis=1)
    return _seam_split(rest, faces, region_faces, seams, (centroid - a) @ anterior)
