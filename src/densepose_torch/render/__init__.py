"""Pictures of DensePose results. Every preset is a plain function
`(image: HxWx3 uint8 RGB, result: DensePoseResult of that image) -> HxWx3 uint8 RGB`.

Dataset presets (`datasets.py`) colour the part index at alpha 1 and give an overlapping pixel
to the higher-scoring person; apply_net presets (`apply_net.py`) draw on the gray photo as
detectron2's `apply_net.py show` does, detection after detection.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..results import DensePoseResult
from .apply_net import bbox, dp_contour, dp_iuv_texture, dp_segm, dp_u, dp_v
from .datasets import controlnet, idm_vton_input, idm_vton_output, magicanimate, viton
from .surface import smpl_vertices
from .texture import default_texture_atlas, load_texture_atlas

Render = Callable[[np.ndarray, DensePoseResult], np.ndarray]

# The preset names of `densepose predict --render`.
PRESETS: dict[str, Render] = {
    "viton": viton,
    "magicanimate": magicanimate,
    "controlnet": controlnet,
    "segm": dp_segm,
    "u": dp_u,
    "v": dp_v,
    "contour": dp_contour,
    "bbox": bbox,
    "texture": dp_iuv_texture,
    "smpl": smpl_vertices,
}
# Presets made for animation pipelines (driving videos): videos rendered with them are smoothed in
# time by default (`densepose predict --temporal`).
ANIMATION_PRESETS: tuple[str, ...] = ("magicanimate",)

__all__ = [
    "ANIMATION_PRESETS", "PRESETS", "Render", "viton", "magicanimate", "controlnet", "dp_segm", "dp_u", "dp_v", "dp_contour",
    "bbox", "dp_iuv_texture", "smpl_vertices", "idm_vton_input", "idm_vton_output", "default_texture_atlas",
    "load_texture_atlas",
]
