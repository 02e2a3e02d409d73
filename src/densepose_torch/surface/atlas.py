"""A person's appearance unwrapped into the 24-tile DensePose texture atlas (the layout of
`render.texture`, the one the `texture` render preset reads), from one photo or accumulated over
many (the frames of a video, several photos of the same person).

Each body pixel of the person goes to the texel its (I, U, V) names, by the rule the `texture`
render reads a texel with (render.texture.texel_in_tile: x = int(U (N - 1)), y = int((1 - V) (N - 1))
in tile I), so an
atlas unwrapped from a picture and painted back gives that picture's colours. A person smaller
than the atlas leaves texels between those their pixels land on: such a texel takes the colour of
the pixel nearest to it in (U, V), when that pixel is within 1.5 times its own distance to the
next pixel and 6 texels (filling between pixels, never far beyond the seen area). A texel takes the mean colour
of all frames, each weighted by its detection's score; pixels landing on it count first, nearby
pixels only where none landed. Texels never seen are holes: alpha 0 in the RGBA atlas.

The atlas is in the chart space of the model that saw the person: DensePose's SMPL charts for zoo
models, the synthetic body's for the embedded default model. `chart_body` records which, and the
PNG written by `write_atlas` carries it, so that an atlas is not painted through the other body's
charts by mistake.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, PngImagePlugin
from scipy.spatial import cKDTree
from tqdm import tqdm

from ..definitions import NUM_PARTS
from ..errors import DensePoseError
from ..io.atomic import atomic_path
from ..io.images import read_image
from ..io.inputs import InputItem
from ..io.video import read_frames
from ..render.texture import ATLAS_COLUMNS, ATLAS_ROWS, DEFAULT_TILE_SIZE, atlas_texel_index
from ..results import DensePoseResult

CHART_BODY_KEY = "densepose:chart_body"  # PNG text chunk naming the atlas's chart space
MAX_FILL_TEXELS = 6  # a texel no pixel landed on takes a pixel's colour from at most this far


class AtlasAccumulator:
    """Sums of colour and weight per texel of a (6N, 4N) atlas; `add` pictures, read `atlas()`."""

    def __init__(self, tile_size: int = DEFAULT_TILE_SIZE, chart_body: str | None = None):
        self.tile_size = tile_size
        self.chart_body = chart_body  # set by the first result added when None
        texels = ATLAS_ROWS * tile_size * ATLAS_COLUMNS * tile_size
        # [0]: pixels that landed on the texel, [1]: the nearest pixels around it (module docstring)
        self._colour = np.zeros((2, texels, 3))
        self._weight = np.zeros((2, texels))
        centres = (np.arange(tile_size) + 0.5) / (tile_size - 1)  # of the texels, in U (and 1 - V)
        self._tile_uv = np.stack(np.broadcast_arrays(centres[None, :], 1 - centres[:, None]), axis=-1).reshape(-1, 2)

    def add(self, image: np.ndarray, result: DensePoseResult, person: int = 0) -> int:
        """Unwrap detection `person` of `result` (of `image`, HxWx3 uint8 RGB); returns the number of
        body pixels it gave. Results of another chart body than the first ones are refused."""
        if self.chart_body is None:
            self.chart_body = result.chart_body
        elif result.chart_body != self.chart_body:
            raise DensePoseError(f"this atlas is on the {self.chart_body} body's charts; a result on the "
                                 f"{result.chart_body} body's cannot be added to it")
        if len(result) <= person:
            return 0
        chart = result.charts[person]
        height, width = image.shape[:2]
        top, left = max(chart.y, 0), max(chart.x, 0)
        bottom, right = min(chart.y + chart.height, height), min(chart.x + chart.width, width)
        if bottom <= top or right <= left:
            return 0
        labels = chart.labels[top - chart.y : bottom - chart.y, left - chart.x : right - chart.x]
        body = (labels > 0) & (labels <= NUM_PARTS)
        if not body.any():
            return 0
        uv = np.clip(chart.uv[:, top - chart.y : bottom - chart.y, left - chart.x : right - chart.x][:, body].astype(np.float32), 0, 1)
        parts = labels[body].astype(np.int64)
        weight = float(result.scores[person])
        colours = image[top:bottom, left:right][body].astype(np.float64)
        self._accumulate(0, atlas_texel_index(parts, uv[0], uv[1], self.tile_size), colours, weight)
        for part in np.unique(parts):
            mine = parts == part
            if mine.sum() < 2:
                continue
            points = uv[:, mine].T
            tree = cKDTree(points)
            spacing = tree.query(points, k=2)[0][:, 1]
            reach = np.minimum(1.5 * spacing, MAX_FILL_TEXELS / (self.tile_size - 1))
            distance, nearest = tree.query(self._tile_uv, distance_upper_bound=reach.max())
            close = np.isfinite(distance)
            close[close] = distance[close] <= reach[nearest[close]]
            tile_texels = np.flatnonzero(close)
            texels = atlas_texel_index(np.full(tile_texels.size, part), *self._tile_uv[tile_texels].T, self.tile_size)
            self._accumulate(1, texels, colours[mine][nearest[close]], weight)
        return int(body.sum())

    def _accumulate(self, kind: int, texels: np.ndarray, colours: np.ndarray, weight: float) -> None:
        size = self._weight.shape[1]
        for channel in range(3):
            self._colour[kind, :, channel] += np.bincount(texels, weights=colours[:, channel] * weight, minlength=size)
        self._weight[kind] += np.bincount(texels, minlength=size) * weight

    def coverage(self) -> float:
        """Share of the atlas's texels seen at least once."""
        return float((self._weight.sum(axis=0) > 0).mean())

    def atlas(self) -> np.ndarray:
        """(6N, 4N, 4) uint8 RGBA: the weighted mean colour of each texel, alpha 255 where seen and 0
        (black) in the holes."""
        landed = self._weight[0] > 0
        colour = np.where(landed[:, None], self._colour[0], self._colour[1])
        weight = np.where(landed, self._weight[0], self._weight[1])
        seen = weight > 0
        rgba = np.zeros((weight.size, 4), np.uint8)
        rgba[seen, :3] = np.clip(np.rint(colour[seen] / weight[seen, None]), 0, 255)
        rgba[seen, 3] = 255
        return rgba.reshape(ATLAS_ROWS * self.tile_size, ATLAS_COLUMNS * self.tile_size, 4)


def write_atlas(path: str | os.PathLike, rgba: np.ndarray, chart_body: str) -> Path:
    """An RGBA atlas as PNG (atomically), with its chart body in a text chunk."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DensePoseError(f"an atlas is written as PNG (it keeps its holes as alpha 0): {path}")
    info = PngImagePlugin.PngInfo()
    info.add_text(CHART_BODY_KEY, chart_body)
    with atomic_path(path) as temporary:
        Image.fromarray(rgba, "RGBA").save(temporary, format="PNG", pnginfo=info)
    return path


def atlas_chart_body(path: str | os.PathLike) -> str | None:
    """The chart body a PNG atlas written by `write_atlas` records (None for other images)."""
    try:
        with Image.open(path) as image:
            return image.info.get(CHART_BODY_KEY) if isinstance(image.info.get(CHART_BODY_KEY), str) else None
    except (OSError, ValueError, SyntaxError):
        return None


def unwrap_inputs(items: list[InputItem], predictor, accumulator: AtlasAccumulator, max_pixels: int,
                  report: Callable[[str], None], progress: tqdm | None = None) -> tuple[int, int]:
    """Unwrap the best-scoring person of every image and every video frame of `items` (io.inputs)
    into `accumulator`, with `predictor` (a Predictor, or anything with its `batch`); unreadable
    inputs and frames are told to `report`. Returns (pictures, pictures with a person)."""
    pictures = with_person = 0
    for item in items:
        try:
            frames = read_frames(item.path, lambda message: report(f"{item.path}: {message}"), max_pixels) if item.kind == "video" \
                else iter([read_image(item.path, max_pixels)])
            for frame in frames:
                if frame is None:
                    continue
                (result,) = predictor.batch([frame])
                pictures += 1
                with_person += accumulator.add(frame, result) > 0
                if progress is not None:
                    progress.set_postfix(coverage=f"{accumulator.coverage():.1%}", refresh=False)
        except DensePoseError as error:
            report(f"skipped {item.path}: {error}")
        if progress is not None:
            progress.update(1)
    return pictures, with_person
