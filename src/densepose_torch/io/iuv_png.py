"""The original Caffe2 DensePose "IUV image": `<name>_IUV.png` and `<name>_INDS.png`.

`_IUV.png` holds the array [I, U*255, V*255] (H x W x 3 uint8) written with OpenCV, so on disk
(RGB order) the file's blue channel is I, green is U and red is V; `cv2.imread` gives the array
back as I, U, V in channels 0, 1, 2 (PIL and most image viewers show R = V, G = U, B = I).
U and V become 8-bit as Caffe2 and detectron2 quantise them: clip(x * 255, 0, 255) truncated.

`_INDS.png` is the single-channel instance index: k = the k-th detection of the result
(descending score, counted from 1), 0 = background; 8-bit, or 16-bit when there are more than
255 detections. (Caffe2's own files numbered instances by ascending score from 0.)

Overlap rule: the higher-scoring detection owns a pixel (`DensePoseResult.to_dense()`); Caffe2
let the lower-scoring one keep it.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import DensePoseError
from ..results import DenseMaps
from .atomic import atomic_path


def iuv_array(maps: DenseMaps) -> np.ndarray:
    """(H, W, 3) uint8 [I, U*255, V*255], U and V clipped to [0, 255] and truncated."""
    quantized = [np.clip(channel.astype(np.float32) * np.float32(255.0), 0, 255).astype(np.uint8) for channel in (maps.U, maps.V)]
    return np.stack([maps.I.astype(np.uint8), *quantized], axis=2)


def inds_array(maps: DenseMaps) -> np.ndarray:
    """(H, W) instance index, uint8 when it fits, else uint16."""
    return maps.instance.astype(np.uint8) if int(maps.instance.max(initial=0)) <= 255 else maps.instance.astype(np.uint16)


def _imwrite(path: Path, array: np.ndarray) -> Path:
    with atomic_path(path) as temporary:
        if not cv2.imwrite(str(temporary), array):
            raise DensePoseError(f"OpenCV could not write {path}")
    return path


def write_iuv_png(path: str | os.PathLike, maps: DenseMaps) -> Path:
    """Write the `_IUV.png` of `maps` (atomically)."""
    return _imwrite(Path(path), iuv_array(maps))


def write_inds_png(path: str | os.PathLike, maps: DenseMaps) -> Path:
    """Write the `_INDS.png` of `maps` (atomically)."""
    return _imwrite(Path(path), inds_array(maps))


def read_iuv_png(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I uint8, U float32, V float32) of an `_IUV.png`, U and V as the stored value / 255."""
    iuv = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if iuv is None:
        raise DensePoseError(f"cannot read IUV image: {path}")
    if iuv.ndim != 3 or iuv.shape[2] != 3 or iuv.dtype != np.uint8:
        raise DensePoseError(f"not an IUV image (expected 8-bit, 3 channels): {path}")
    scale = np.float32(255.0)
    return iuv[:, :, 0].copy(), iuv[:, :, 1].astype(np.float32) / scale, iuv[:, :, 2].astype(np.float32) / scale


def read_inds_png(path: str | os.PathLike) -> np.ndarray:
    """The (H, W) uint16 instance index of an `_INDS.png`."""
    inds = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if inds is None:
        raise DensePoseError(f"cannot read instance image: {path}")
    if inds.ndim != 2:
        raise DensePoseError(f"not an instance index image (expected one channel): {path}")
    return inds.astype(np.uint16)
