"""The bodies `POST /v1/predict` answers with, one per `output`.

- `json`: `{"model", "height", "width", "detections": [...]}`, each detection a COCO DensePose
  results record (`io/coco_results.py`): `bbox` [x, y, w, h], `score`, `segmentation` (RLE of
  the chart's body pixels), `uv_shape` [3, h, w] and `uv_data`, the base64 PNG of the chart
  (R = part I, G = U*255, B = V*255), anchored at (int(x), int(y)).
- `iuv`: the full-image Caffe2 `_IUV.png` (`io/iuv_png.py`: OpenCV channel order, so the file's
  blue channel is I, green U*255, red V*255).
- `npz`: the `.npz` archive of `io/npz.py`.
- a render preset name (`render.PRESETS`): that picture, as PNG.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ..errors import DensePoseError
from ..io.coco_results import result_to_records
from ..io.iuv_png import iuv_array
from ..render import PRESETS
from ..render.surface import smpl_vertices
from ..results import DensePoseResult
from ..surface import SmplSurface

ARRAY_OUTPUTS = ("json", "iuv", "npz")
OUTPUTS = (*ARRAY_OUTPUTS, *PRESETS)


def json_reply(result: DensePoseResult, model_name: str, file_name: str | None) -> dict:
    height, width = result.image_size
    return {"model": model_name, "height": height, "width": width,
            "detections": result_to_records(result, image_id=0, file_name=file_name)}


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of an HxW or HxWx3 uint8 array, channels written in the order OpenCV writes them."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise DensePoseError("OpenCV could not encode a PNG")
    return encoded.tobytes()


def iuv_png_bytes(result: DensePoseResult) -> bytes:
    return png_bytes(iuv_array(result.to_dense()))


def render_png_bytes(preset: str, image: np.ndarray, result: DensePoseResult, surface: SmplSurface | None = None) -> bytes:
    """PNG of the preset's RGB picture of `result` on `image`; the `smpl` preset draws with
    `surface` (one per service, so that its index is built once)."""
    render = functools.partial(smpl_vertices, surface=surface) if preset == "smpl" else PRESETS[preset]
    return png_bytes(render(image, result)[:, :, ::-1])
