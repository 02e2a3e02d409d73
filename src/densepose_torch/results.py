"""What a prediction returns: per-box DensePose charts and full-image IUV maps.

Everything here is numpy, so results can be saved, rendered and served without torch.
Coordinates are original-image pixels; boxes are XYXY floats.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .definitions import CONFIDENCE_FIELDS

if TYPE_CHECKING:  # surface builds on this module
    from .surface import ChartLocator, SurfaceMaps



@dataclass(frozen=True)
class ImageWindow:
    """The part of a box that lies inside an image: `image` (rows, cols) slices of the image,
    `box` the same pixels' (rows, cols) slices of a box-sized array."""

    image: tuple[slice, slice]
    box: tuple[slice, slice]


def image_window(x: int, y: int, width: int, height: int, image_size: tuple[int, ...]) -> ImageWindow | None:
    """The overlap of a `width` x `height` box anchored at (x, y) with an image of `image_size`
    ((height, width, ...)); None where they do not overlap. Charts may reach past the image
    (their box is truncated, not clipped), so everything that pastes one goes through here."""
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + height, image_size[0]), min(x + width, image_size[1])
    if bottom <= top or right <= left:
        return None
    return ImageWindow((slice(top, bottom), slice(left, right)), (slice(top - y, bottom - y), slice(left - x, right - x)))


@dataclass(frozen=True)
class ChartResult:
    """DensePose chart of one detection, anchored in the image at (x, y).

    `labels` (h, w) uint8 holds the body part 1..24 of each pixel of the box, 0 for background;
    `uv` (2, h, w) float32 the chart coordinates of that part (0 at background). As in detectron2,
    (x, y, w, h) are int(x0), int(y0), max(int(x1 - x0), 1), max(int(y1 - y0), 1) of the float box,
    each truncated separately. Confidence maps are (h, w) float32 and exist only for models that
    predict them: sigma_2, kappa_u, kappa_v are raw network outputs picked by label (0 at
    background); fine/coarse segm confidences cover the whole box. `mask` (h, w) bool is the
    person mask of a cascade model's mask branch (None for every other model).
    """

    x: int
    y: int
    labels: np.ndarray
    uv: np.ndarray
    sigma_2: np.ndarray | None = None
    kappa_u: np.ndarray | None = None
    kappa_v: np.ndarray | None = None
    fine_segm_confidence: np.ndarray | None = None
    coarse_segm_confidence: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])

    @property
    def width(self) -> int:
        return int(self.labels.shape[1])

    def window(self, image_size: tuple[int, int]) -> ImageWindow | None:
        """Where this chart lies inside an image of `image_size` (height, width)."""
        return image_window(self.x, self.y, self.width, self.height, image_size)

    def confidences(self) -> dict[str, np.ndarray]:
        """The confidence maps this chart has, by name."""
        return {name: getattr(self, name) for name in CONFIDENCE_FIELDS if getattr(self, name) is not None}


@dataclass(frozen=True)
class DenseMaps:
    """Full-image maps: part I (uint8 0..24), U and V (float32, 0 at background), and the
    instance index (uint16, 0 = background, k = the k-th detection of the result, 1-based)."""

    I: np.ndarray  # noqa: E741 - DensePose's own name for the part map
    U: np.ndarray
    V: np.ndarray
    instance: np.ndarray


@dataclass(frozen=True)
class DensePoseResult:
    """Detections of one image, in descending score order (detectron2's order). `keypoints`
    (N, 17, 3) float32 holds COCO's 17 keypoints of each detection as image x, y and a score
    in (0, 1]; only cascade models with a keypoint branch predict them (None otherwise).
    `track_ids` (N,) int64, from 1, names each detection's person through a video (the same id
    in every frame; video.tracking sets it); None for still images. `chart_body` says whose charts
    U, V are on: "smpl" (DensePose's, every zoo model's) or "synthetic" (our synthetic body's, the
    embedded default model's); only SMPL charts have SMPL correspondences (`to_surface`)."""

    image_size: tuple[int, int]  # (height, width) of the original image
    boxes: np.ndarray  # (N, 4) float32 XYXY
    scores: np.ndarray  # (N,) float32
    charts: list[ChartResult] = field(default_factory=list)
    keypoints: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    chart_body: str = "smpl"

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def instance_ids(self) -> np.ndarray:
        """(N,) int64 instance number of each detection in the full-image maps: its track id in a
        video, else its rank k (1 = the highest score)."""
        if self.track_ids is not None:
            return np.asarray(self.track_ids, np.int64).reshape(-1)
        return np.arange(1, len(self) + 1, dtype=np.int64)

    def select(self, keep: np.ndarray | list[int]) -> "DensePoseResult":
        """The detections at the given indices (or boolean mask), in that order."""
        keep = np.asarray(keep)
        index = np.flatnonzero(keep) if keep.dtype == np.bool_ else keep.astype(np.int64).reshape(-1)
        return replace(
            self,
            boxes=self.boxes[index].reshape(-1, 4),
            scores=self.scores[index],
            charts=[self.charts[i] for i in index],
            keypoints=None if self.keypoints is None else self.keypoints[index].reshape(-1, *self.keypoints.shape[1:]),
            track_ids=None if self.track_ids is None else np.asarray(self.track_ids)[index].reshape(-1),
        )

    def above(self, min_score: float) -> "DensePoseResult":
        """Detections scoring above `min_score` (strictly, as detectron2's test threshold and
        `Predictor(min_score=...)`, which keeps only these in the first place)."""
        return self.select(self.scores > min_score)

    def to_surface(self, locator: ChartLocator | None = None) -> SurfaceMaps:
        """SMPL maps of every body pixel: vertex, face and barycentric point
        (`densepose_torch.surface.SurfaceMaps`). Needs DensePose's UV_Processed.mat (the [surface]
        extra) and SMPL charts: a result of the synthetic body is refused. Pass a
        `surface.ChartLocator` when mapping many results (building one takes about 0.15 s)."""
        from .surface.maps import SmplSurface, require_smpl_charts_of, surface_maps

        require_smpl_charts_of(self.chart_body)
        return surface_maps(self.to_dense(), locator if locator is not None else SmplSurface().locator)

    def to_dense(self) -> DenseMaps:
        """Paste every chart into full-image maps. Where charts overlap, the pixel goes to the
        higher-scoring detection (the earlier one on equal scores); only body pixels (I > 0) are
        pasted, so a detection's background never hides another one's body."""
        height, width = self.image_size
        part = np.zeros((height, width), np.uint8)
        u = np.zeros((height, width), np.float32)
        v = np.zeros((height, width), np.float32)
        instance = np.zeros((height, width), np.uint16)
        ids = self.instance_ids()
        # Paint the lowest score first so that higher scores overwrite it; a stable sort on the
        # negated order keeps "earlier wins" on ties.
        order = np.argsort(-self.scores, kind="stable")[::-1]
        for index in order:
            chart = self.charts[index]
            window = chart.window(self.image_size)
            if window is None:
                continue
            labels = chart.labels[window.box]
            body = labels > 0
            part[window.image][body] = labels[body]
            u[window.image][body] = chart.uv[0][window.box][body]
            v[window.image][body] = chart.uv[1][window.box][body]
            instance[window.image][body] = ids[index]
        return DenseMaps(I=part, U=u, V=v, instance=instance)
