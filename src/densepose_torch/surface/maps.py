"""Full-image SMPL maps of a DensePose result: which SMPL vertex, face and barycentric point every
body pixel shows; and a colour for every SMPL vertex, so that a body point has one colour in every
picture."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, diags
from scipy.sparse.linalg import eigsh

from ..errors import DensePoseError
from ..results import DenseMaps, DensePoseResult
from .lookup import ChartLocator
from .smpl import SMPL_VERTEX_COUNT, SmplCharts, load_smpl_charts


@dataclass(frozen=True)
class SurfaceMaps:
    """Per pixel of the image; -1 (and zero weights) off the body."""

    vertex: np.ndarray  # (H, W) int32: the nearest SMPL vertex, 0..6889
    face: np.ndarray  # (H, W) int32: the face of the chart mesh (row of SmplCharts.faces) holding the point
    barycentric: np.ndarray  # (H, W, 3) float32: the point's weights on that face's corners
    inside: np.ndarray  # (H, W) bool: (U, V) lay inside a face (else it was put on the nearest chart vertex)


def surface_maps(maps: DenseMaps, locator: ChartLocator) -> SurfaceMaps:
    """The SMPL maps of full-image DensePose maps whose charts are DensePose's SMPL charts."""
    height, width = maps.I.shape
    points = locator.locate(maps.I, maps.U, maps.V)
    return SurfaceMaps(
        vertex=points.vertex.reshape(height, width).astype(np.int32),
        face=points.face.reshape(height, width).astype(np.int32),
        barycentric=points.barycentric.reshape(height, width, 3).astype(np.float32),
        inside=points.inside.reshape(height, width),
    )


def require_smpl_charts_of(chart_body: str, what: str = "SMPL correspondences") -> None:
    """A one-line DensePoseError unless `chart_body` (ModelConfig.chart_body, DensePoseResult.chart_body)
    is DensePose's SMPL: the synthetic body's charts (the embedded default model's) are another
    surface, which no SMPL vertex corresponds to."""
    if chart_body != "smpl":
        raise DensePoseError(f"{what} need a model of DensePose's SMPL charts (any zoo model, e.g. --model R_50_FPN_s1x); "
                             f"this model's charts are on the {chart_body} body, not SMPL")


def vertex_colours(charts: SmplCharts) -> np.ndarray:
    """(6890, 3) uint8 RGB for every SMPL vertex, smooth over the body: the three smoothest
    non-constant vibration modes of the mesh (eigenvectors of its graph Laplacian), each stretched
    to 0..255. Neighbours on the body get near colours across part borders and seams; each sign
    is fixed so that the colours do not depend on the eigen-solver's."""
    triangles = charts.smpl_faces()
    rows = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]])
    columns = np.concatenate([triangles[:, 1], triangles[:, 2], triangles[:, 0]])
    adjacency = coo_matrix((np.ones(rows.size), (rows, columns)), shape=(SMPL_VERTEX_COUNT,) * 2).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    laplacian = diags(np.asarray(adjacency.sum(axis=1)).reshape(-1)) - adjacency
    # Shift-invert about a small negative number finds the smallest eigenvalues fast (the Laplacian
    # itself is singular); the seed fixes the solver's start.
    start = np.random.default_rng(0).random(SMPL_VERTEX_COUNT)
    values, vectors = eigsh(laplacian, k=4, sigma=-1e-3, which="LM", v0=start)
    modes = vectors[:, np.argsort(values)[1:4]]
    modes *= np.sign((modes ** 3).sum(axis=0))  # the sign with the heavier positive tail
    low, high = np.percentile(modes, 1, axis=0), np.percentile(modes, 99, axis=0)
    return np.clip(np.rint((modes - low) / (high - low) * 255), 0, 255).astype(np.uint8)


class SmplSurface:
    """DensePose's SMPL charts (from `path`, or the [surface] extra), with their locator and vertex
    colours, each built on first use: what a run that may never need them holds."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = path
        self._charts: SmplCharts | None = None
        self._locator: ChartLocator | None = None
        self._colours: np.ndarray | None = None

    @property
    def charts(self) -> SmplCharts:
        if self._charts is None:
            self._charts = load_smpl_charts(self.path)
        return self._charts

    @property
    def locator(self) -> ChartLocator:
        if self._locator is None:
            self._locator = ChartLocator(self.charts)
        return self._locator

    @property
    def colours(self) -> np.ndarray:
        """(6890, 3) uint8 RGB of each SMPL vertex (`vertex_colours`)."""
        if self._colours is None:
            self._colours = vertex_colours(self.charts)
        return self._colours

    def maps(self, result: DensePoseResult) -> SurfaceMaps:
        """The SMPL maps of a result of SMPL charts (others are refused)."""
        return result.to_surface(self.locator)
