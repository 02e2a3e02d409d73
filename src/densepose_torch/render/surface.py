"""The `smpl` preset: every body pixel in the colour of the SMPL vertex it shows, on black. The
colours vary smoothly over the body (surface.vertex_colours), so a body point has one colour in
every photo and every frame, whoever wears it and whatever the pose."""
from __future__ import annotations

import numpy as np

from ..results import DensePoseResult
from ..surface.maps import SmplSurface
from .datasets import check_size


def smpl_vertices(image: np.ndarray, result: DensePoseResult, surface: SmplSurface | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB: body pixels coloured by their SMPL vertex, black elsewhere. Needs a result
    of SMPL charts (zoo models) and the [surface] extra; pass one `surface` for many pictures (building
    it takes about 0.2 s)."""
    check_size(image, result)
    surface = surface if surface is not None else SmplSurface()
    vertex = surface.maps(result).vertex
    picture = np.zeros((*vertex.shape, 3), np.uint8)
    body = vertex >= 0
    picture[body] = surface.colours[vertex[body]]
    return picture
