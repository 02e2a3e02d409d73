"""Random plausible body poses: an everyday pose family (standing, walking, running, sitting,
squatting, bending, reaching, waving, ...), per-joint Gaussian variation, then clipping to
anatomical joint limits.

Angles are (flexion, abduction, twist) in degrees about each joint's own head, relative to the
rest pose (an A-pose: upper arms about 45 degrees from the body, elbows slightly bent); their
directions are defined in `body.joint_frames`. For joints of both sides a name without ".L"/".R"
sets both.
"""
from __future__ import annotations

import numpy as np

# (flexion, abduction, twist) ranges in degrees.
JOINT_LIMITS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "root": ((-10, 10), (-8, 8), (-15, 15)),
    "spine05": ((-8, 15), (-8, 8), (-10, 10)),
    "spine04": ((-8, 15), (-8, 8), (-10, 10)),
    "spine03": ((-8, 15), (-8, 8), (-10, 10)),
    "spine02": ((-8, 15), (-8, 8), (-10, 10)),
    "spine01": ((-8, 12), (-6, 6), (-8, 8)),
    "neck01": ((-12, 18), (-10, 10), (-20, 20)),
    "neck02": ((-12, 18), (-10, 10), (-20, 20)),
    "neck03": ((-12, 18), (-10, 10), (-20, 20)),
    "head": ((-20, 25), (-15, 15), (-20, 20)),
    "clavicle": ((-10, 15), (-5, 20), (0, 0)),
    "upperarm01": ((-50, 170), (-42, 140), (-70, 70)),
    "lowerarm01": ((-5, 145), (0, 0), (0, 0)),
    "lowerarm02": ((0, 0), (0, 0), (-70, 80)),
    "wrist": ((-60, 60), (-20, 30), (0, 0)),
    "finger": ((-5, 90), (-10, 10), (0, 0)),
    "thumb": ((-10, 45), (-15, 25), (0, 0)),
    "upperleg01": ((-25, 120), (-15, 45), (-35, 40)),
    "lowerleg01": ((-145, 0), (0, 0), (-10, 10)),
    "foot": ((-45, 25), (-15, 15), (-10, 10)),
}

# Pose families: (weight, mean angles). Sided keys (".L"/".R") describe the person's left/right;
# every family is also used mirrored with probability 1/2.
_ARMS_DOWN = {"upperarm01": (5, -32, 0), "lowerarm01": (15, 0, 0)}
POSE_FAMILIES: dict[str, tuple[float, dict[str, tuple[float, float, float]]]] = {
    "stand": (3.0, {**_ARMS_DOWN}),
    "stand_relaxed": (1.5, {"upperarm01.L": (15, -25, 20), "lowerarm01.L": (60, 0, 0), "upperarm01.R": (-5, -30, 0),
                            "upperleg01.L": (5, 8, 10), "lowerleg01.L": (-10, 0, 0)}),
    "walk": (3.0, {"upperleg01.L": (25, 0, 0), "upperleg01.R": (-15, 0, 0), "lowerleg01.L": (-10, 0, 0),
                   "lowerleg01.R": (-25, 0, 0), "upperarm01.L": (-20, -32, 0), "upperarm01.R": (25, -32, 0),
                   "lowerarm01": (25, 0, 0), "foot.R": (-15, 0, 0)}),
    "run": (1.0, {"upperleg01.L": (55, 0, 0), "upperleg01.R": (-20, 0, 0), "lowerleg01.L": (-60, 0, 0),
                  "lowerleg01.R": (-85, 0, 0), "upperarm01.L": (-35, -25, 0), "upperarm01.R": (45, -25, 0),
                  "lowerarm01": (90, 0, 0), "spine03": (8, 0, 0), "spine02": (8, 0, 0)}),
    "sit": (1.5, {"upperleg01": (85, 8, 0), "lowerleg01": (-90, 0, 0), "upperarm01": (25, -25, 0),
                  "lowerarm01": (45, 0, 0), "spine04": (5, 0, 0), "spine02": (5, 0, 0)}),
    "squat": (0.7, {"upperleg01": (110, 20, 0), "lowerleg01": (-125, 0, 0), "foot": (20, 0, 0),
                    "spine04": (12, 0, 0), "spine03": (12, 0, 0), "upperarm01": (50, -20, 0),
                    "lowerarm01": (50, 0, 0)}),
    "bend": (0.8, {"upperleg01": (45, 0, 0), "spine05": (12, 0, 0), "spine04": (12, 0, 0), "spine03": (12, 0, 0),
                   "spine02": (12, 0, 0), "upperarm01": (60, -30, 0), "lowerarm01": (20, 0, 0),
                   "neck01": (-10, 0, 0), "head": (-15, 0, 0)}),
    "reach": (1.0, {"upperarm01.L": (85, -10, 0), "lowerarm01.L": (10, 0, 0), **{k + ".R": v for k, v in _ARMS_DOWN.items()},
                    "spine02": (0, 0, 8)}),
    "wave": (1.0, {"upperarm01.L": (10, 105, 0), "lowerarm01.L": (70, 0, 0), "lowerarm02.L": (0, 0, 40),
                   **{k + ".R": v for k, v in _ARMS_DOWN.items()}}),
    "arms_up": (0.6, {"upperarm01": (20, 120, 0), "lowerarm01": (20, 0, 0)}),
    "t_pose": (0.4, {"upperarm01": (0, 40, 0), "lowerarm01": (5, 0, 0)}),
    "phone": (0.8, {"upperarm01.L": (20, -30, -20), "lowerarm01.L": (120, 0, 0), "lowerarm02.L": (0, 0, 30),
                    "neck02": (12, 0, 0), "head": (15, 0, 0), **{k + ".R": v for k, v in _ARMS_DOWN.items()}}),
    "lunge": (0.5, {"upperleg01.L": (80, 5, 0), "lowerleg01.L": (-80, 0, 0), "upperleg01.R": (-20, 0, 0),
                    "lowerleg01.R": (-40, 0, 0), "upperarm01": (0, -25, 0), "lowerarm01": (40, 0, 0)}),
}

# Standard deviation (degrees) of the per-joint variation around a family's mean.
_SPREAD = {"upperarm01": 14.0, "lowerarm01": 15.0, "lowerarm02": 20.0, "wrist": 15.0, "finger": 15.0,
           "thumb": 10.0, "upperleg01": 8.0, "lowerleg01": 8.0, "foot": 8.0, "head": 10.0, "clavicle": 5.0}
_DEFAULT_SPREAD = 5.0


def _base(name: str) -> str:
    base = name.partition(".")[0]
    if base.startswith("finger1-"):
        return "thumb"
    if base.startswith("finger"):
        return "finger"
    return base


def mirror_joint_name(name: str) -> str:
    """The name of the joint on the other side of the body (rig names end in .L / .R)."""
    if name.endswith(".L"):
        return name[:-2] + ".R"
    if name.endswith(".R"):
        return name[:-2] + ".L"
    return name


def sample_pose(rng: np.random.Generator, joint_names: tuple[str, ...], family: str | None = None) -> np.ndarray:
    """(J, 3) joint angles in radians for one random pose (optionally of a given family)."""
    names = list(POSE_FAMILIES)
    if family is None:
        weights = np.array([POSE_FAMILIES[n][0] for n in names])
        family = names[rng.choice(len(names), p=weights / weights.sum())]
    mean = POSE_FAMILIES[family][1]
    mirrored = rng.random() < 0.5
    index = {n: i for i, n in enumerate(joint_names)}
    angles = np.zeros((len(joint_names), 3))
    for key, value in mean.items():
        targets = [key] if "." in key else [n for n in (key, key + ".L", key + ".R") if n in index]
        for target in targets:
            value = np.array(value, dtype=np.float64)
            if mirrored and "." not in target:
                value[1:] *= -1  # a mirrored trunk bends and turns the other way
            angles[index[mirror_joint_name(target) if mirrored else target]] = value
    curl = rng.uniform(5, 60, size=2)  # one finger curl per hand
    spread = np.array([_SPREAD.get(_base(n), _DEFAULT_SPREAD) for n in joint_names])
    angles += rng.normal(size=angles.shape) * spread[:, None]
    for j, name in enumerate(joint_names):
        base = _base(name)
        if base in ("finger", "thumb"):
            angles[j, 0] += curl[0 if name.endswith(".L") else 1] * (0.5 if base == "thumb" else 1.0)
        limits = np.array(JOINT_LIMITS[base])
        angles[j] = np.clip(angles[j], limits[:, 0], limits[:, 1])
    return np.radians(angles)
