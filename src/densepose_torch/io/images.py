"""Reading images the way detectron2 reads them, and normalising whatever users hand in.

Everything becomes an HxWx3 uint8 RGB array: EXIF orientation applied, grayscale replicated,
alpha dropped (as PIL's convert("RGB") does), 16-bit scaled to 8-bit.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DensePoseError
from .atomic import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95
# 40 megapixels (8000 x 5000) holds the photos of cameras and phones in their usual modes (12 to
# 24 MP; full-resolution modes of 48 MP and more need a higher limit) and stays well below
# Pillow's own decompression-bomb refusal (179 megapixels). A file's header declares its size, so
# larger images are refused before a byte of pixels is decoded (a 60000 x 60000 PNG bomb is tiny
# on disk but would need 10 GB).
DEFAULT_MAX_PIXELS = 40_000_000

ChannelOrder = Literal["rgb", "bgr"]
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL would clip 16-bit values at 255 when converting; scale the full range instead.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise DensePoseError("floating-point images are not supported; save the image as 8-bit")
    return np.asarray(image.convert("RGB"))


class ImageTooLargeError(DensePoseError):
    """An image whose header declares more pixels than allowed (`width`, `height`)."""

    def __init__(self, width: int, height: int, max_pixels: int, what: str):
        super().__init__(f"{what} is {width}x{height} pixels, over the limit of {max_pixels} pixels")
        self.width, self.height = width, height


def check_pixels(image: Image.Image, max_pixels: int, what: str) -> None:
    """ImageTooLargeError if an opened (not yet decoded) image has more than `max_pixels`."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(width, height, max_pixels, what)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """HxWx3 uint8 RGB pixels of an image file, EXIF orientation applied. An image of more than
    `max_pixels` is refused from its header, before decoding."""
    path = Path(path)
    if not path.is_file():
        raise DensePoseError(f"no such image file: {path}")
    try:
        with Image.open(path) as image:
            check_pixels(image, max_pixels, f"image {path}")
            image = ImageOps.exif_transpose(image)
            pixels = _pil_to_rgb(image)
    except Image.DecompressionBombError:
        raise DensePoseError(f"image {path} is too large to decode safely (Pillow refuses images over "
                             f"{2 * Image.MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise DensePoseError(f"not an image (or an unsupported format): {path}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DensePoseError(f"cannot read image {path}: {error}") from None
    return _check_size(pixels, str(path))


def _check_size(pixels: np.ndarray, what: str) -> np.ndarray:
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise DensePoseError(f"image has no pixels ({pixels.shape[1]}x{pixels.shape[0]}): {what}")
    return pixels


def to_rgb_array(image: ImageInput, channel_order: ChannelOrder = "rgb") -> np.ndarray:
    """Any supported image input as an HxWx3 uint8 RGB array.

    Paths and PIL images carry their own colour model; numpy arrays are HxW (gray), HxWx3 or
    HxWx4 (alpha ignored) in `channel_order`, uint8 or uint16."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return _check_size(_pil_to_rgb(ImageOps.exif_transpose(image)), "PIL image")
    if not isinstance(image, np.ndarray):
        raise DensePoseError(f"unsupported image input of type {type(image).__name__}; give a path, a PIL image or an array")
    if channel_order not in ("rgb", "bgr"):
        raise DensePoseError(f"channel_order must be 'rgb' or 'bgr', not {channel_order!r}")
    array = image
    if array.dtype == np.uint16:
        array = np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise DensePoseError(f"image arrays must be uint8 (or uint16), not {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, :3]
        if channel_order == "bgr":
            array = array[:, :, ::-1]
    else:
        raise DensePoseError(f"image arrays must be HxW, HxWx3 or HxWx4, not shape {tuple(image.shape)}")
    return _check_size(np.ascontiguousarray(array), "array")


def write_picture(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """An HxWx3 RGB uint8 picture as PNG or JPEG (quality 95, by the extension), written atomically."""
    path = Path(path)
    parameters = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as temporary:
        if not cv2.imwrite(str(temporary), np.ascontiguousarray(rgb[:, :, ::-1]), parameters):
            raise DensePoseError(f"OpenCV could not write {path}")
