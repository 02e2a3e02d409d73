"""How a horizontal flip changes a body point's part and chart coordinates, for points (training
augmentation) and for whole chart maps (the test-time flip).

A mirrored image shows the left arm where the right one was: part labels swap through
`definitions.PART_SYMMETRY`, and U, V move to the mirrored point of the other side's chart. On
DensePose's SMPL charts that move is only known as a table (`UV_symmetry_transforms.mat`, which
detectron2 reads at [int(V * 255), int(U * 255)] of the original part's 256 x 256 table); on our
synthetic body it is exact (`synthetic.parts.flip_iuv`: left charts mirror right ones, the torso's
V reverses).

The test-time flip (`Predictor(flip=True)`) runs the DensePose head a second time on the mirrored
image at the mirrored boxes and averages the two passes' raw outputs, as detectron2's
DensePoseGeneralizedRCNNWithTTA does for a flip: `mirror_chart_outputs` brings the mirrored pass
back (maps reversed left to right, part channels swapped, U and V remapped).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .definitions import COARSE_PART_SYMMETRY, NUM_PART_LABELS, NUM_PARTS, PART_SYMMETRY, UV_CONFIDENCE_FIELDS
from .errors import DensePoseError

BoxArray = TypeVar("BoxArray", np.ndarray, torch.Tensor)

UV_TABLE_SIZE = 256


@dataclass(frozen=True)
class FlipSymmetry:
    """How (I, U, V) of a point changes under a horizontal flip. With tables (DensePose's
    `UV_symmetry_transforms.mat`, 24 x 256 x 256 each) the new U, V are read at
    [int(V * 255), int(U * 255)] of the original part's table, as detectron2 does; without
    tables the synthetic body's exact mirror map is used."""

    u_tables: np.ndarray | None = None
    v_tables: np.ndarray | None = None

    def flip_points(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = np.asarray(parts, dtype=np.int64)
        if self.u_tables is None:
            from .synthetic.parts import flip_iuv  # not at import: the synthetic package is large

            new_parts, new_u, new_v = flip_iuv(parts, u, v)
            return new_parts.astype(np.int64), new_u, new_v
        table = np.clip(parts - 1, 0, NUM_PARTS - 1)
        row = (np.clip(v, 0.0, 1.0) * (UV_TABLE_SIZE - 1)).astype(np.int64)
        col = (np.clip(u, 0.0, 1.0) * (UV_TABLE_SIZE - 1)).astype(np.int64)
        new_u = self.u_tables[table, row, col].astype(np.float32)
        new_v = self.v_tables[table, row, col].astype(np.float32)
        labelled = parts > 0
        new_parts = np.asarray(PART_SYMMETRY, dtype=np.int64)[parts]
        return new_parts, np.where(labelled, new_u, u).astype(np.float32), np.where(labelled, new_v, v).astype(np.float32)

    def flip_chart_uv(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U, V maps (R, 25, S, S) of one person per row, one channel per part, predicted on a
        mirrored image (and already reversed left to right): the same maps in the original
        image's charts. Channel p takes the mirrored pass's channel PART_SYMMETRY[p], moved
        through the mirror map of that part; channel 0 (background) is kept."""
        source = torch.tensor(PART_SYMMETRY, device=u.device)
        u_source, v_source = u[:, source], v[:, source]
        if self.u_tables is None:
            # The synthetic body's mirror map moves each part's U and V by x -> a + b x; a and b
            # are read off the exact point map at 0 and 1.
            labels = np.arange(NUM_PART_LABELS)
            zero, one = np.zeros(NUM_PART_LABELS, np.float32), np.ones(NUM_PART_LABELS, np.float32)
            _, u_at_0, v_at_0 = self.flip_points(labels, zero, zero)
            _, u_at_1, v_at_1 = self.flip_points(labels, one, one)
            mapped = []
            for value, at_0, at_1 in ((u_source, u_at_0, u_at_1), (v_source, v_at_0, v_at_1)):
                offset = torch.from_numpy(at_0[list(PART_SYMMETRY)]).to(value.device, value.dtype)[None, :, None, None]
                slope = torch.from_numpy((at_1 - at_0)[list(PART_SYMMETRY)]).to(value.device, value.dtype)[None, :, None, None]
                mapped.append(offset + slope * value)
            return mapped[0], mapped[1]
        # Index into the 24 stacked tables: channel p reads the table of the mirrored pass's part
        # PART_SYMMETRY[p], at [int(V * 255), int(U * 255)].
        table = (source[1:] - 1).view(1, -1, 1, 1) * UV_TABLE_SIZE**2
        row = (v_source[:, 1:].float().clamp(0.0, 1.0) * (UV_TABLE_SIZE - 1)).long()
        col = (u_source[:, 1:].float().clamp(0.0, 1.0) * (UV_TABLE_SIZE - 1)).long()
        index = table + row * UV_TABLE_SIZE + col
        u_new, v_new = (torch.from_numpy(tables).to(u.device).take(index).to(u.dtype) for tables in (self.u_tables, self.v_tables))
        return torch.cat([u_source[:, :1], u_new], 1), torch.cat([v_source[:, :1], v_new], 1)


def load_flip_symmetry(uv_symmetry: str | os.PathLike | None) -> FlipSymmetry:
    """The flip symmetry of a `UV_symmetry_transforms.mat` file, or (None) of our synthetic body."""
    if uv_symmetry is None:
        return FlipSymmetry()
    path = Path(uv_symmetry).expanduser()
    if not path.is_file():
        raise DensePoseError(f"no such UV symmetry file: {path}")
    from scipy.io import loadmat

    try:
        data = loadmat(str(path))
        u_tables = np.stack([np.asarray(data["U_transforms"][0, i], dtype=np.float32) for i in range(NUM_PARTS)])
        v_tables = np.stack([np.asarray(data["V_transforms"][0, i], dtype=np.float32) for i in range(NUM_PARTS)])
    except (KeyError, IndexError, ValueError, TypeError, OSError) as error:
        raise DensePoseError(f"{path} is not a UV_symmetry_transforms.mat file ({type(error).__name__}: {error})") from None
    if u_tables.shape != (NUM_PARTS, UV_TABLE_SIZE, UV_TABLE_SIZE) or v_tables.shape != u_tables.shape:
        raise DensePoseError(f"{path}: expected 24 tables of 256x256, got {u_tables.shape}")
    return FlipSymmetry(u_tables, v_tables)


def mirror_chart_outputs(outputs: dict[str, torch.Tensor], symmetry: FlipSymmetry) -> dict[str, torch.Tensor]:
    """Raw DensePose head outputs (field -> (R, C, S, S)) of boxes on a mirrored image, brought
    back to the original image: every map reversed left to right, the per-part channels swapped,
    U and V moved to the mirrored charts, the 15 coarse parts of legacy models swapped. Fields
    this does not know (keypoint heatmaps of cascade models) are left out."""
    mirrored: dict[str, torch.Tensor] = {}
    for name, value in outputs.items():
        if name == "keypoints":
            continue
        value = value.flip(-1)
        # The UV confidences have a channel per part, as the part logits; the direction of the
        # anisotropic one (kappa_u, kappa_v) is kept as predicted, not mirrored.
        if name == "fine_segm" or name in UV_CONFIDENCE_FIELDS["indep_aniso"]:
            value = value[:, list(PART_SYMMETRY)]
        elif name == "coarse_segm" and value.shape[1] == len(COARSE_PART_SYMMETRY):
            value = value[:, list(COARSE_PART_SYMMETRY)]
        mirrored[name] = value
    if "u" in mirrored:
        mirrored["u"], mirrored["v"] = symmetry.flip_chart_uv(mirrored["u"], mirrored["v"])
    return mirrored


def mirror_boxes(boxes: BoxArray, width: float) -> BoxArray:
    """(N, 4) XYXY boxes (a numpy array or a tensor) of an image `width` pixels wide, in the
    mirrored image: x -> width - x, so x0 and x1 swap."""
    mirrored = boxes[:, [2, 1, 0, 3]]  # indexing with a list copies, in numpy and torch alike
    mirrored[:, 0::2] = width - mirrored[:, 0::2]
    return mirrored


def average_with_mirrored(outputs: dict[str, torch.Tensor], mirrored_pass: dict[str, torch.Tensor], symmetry: FlipSymmetry) -> dict[str, torch.Tensor]:
    """The mean of a pass's raw outputs and the mirrored pass's (same boxes, mirrored), each
    field as the network gives it (logits, not probabilities, as detectron2 averages its
    augmentations); fields the mirror cannot map stay the first pass's."""
    back = mirror_chart_outputs(mirrored_pass, symmetry)
    return {name: (value + back[name]) / 2 if name in back else value for name, value in outputs.items()}
