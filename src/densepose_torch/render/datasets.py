"""Part-index pictures as try-on and animation datasets store them (`image-densepose` folders,
ControlNet conditioning images, MagicAnimate motion videos).

Each is a colormap of the part index I (0..24) at alpha 1: background pixels get the colormap's
background colour, body pixels the colour of `uint8(I * 255 / 24)` (computed in float32 and
truncated, as detectron2's `dp_segm` visualizer does: part 1 -> 10, part 12 -> 127, part 24 -> 255).

Several persons: the higher-scoring person wins a pixel where people overlap (the rule of
`DensePoseResult.to_dense()`). The tools these datasets were made with paint detections one after
the other, so there the lower-scoring one ends on top; with the usual single person per image the
two rules give the same picture.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..definitions import NUM_PARTS
from ..errors import DensePoseError
from ..results import DensePoseResult

# IDM-VTON's demo resizes the person photo to 768x1024, runs DensePose on a 384x512 copy and
# resizes the rendered picture back to 768x1024 (all sizes width x height, PIL's default
# bicubic filter).
IDM_VTON_SIZE = (768, 1024)
IDM_VTON_DENSEPOSE_SIZE = (384, 512)

PART_SCALE = np.float32(255.0 / NUM_PARTS)


def part_colormap_values(part: np.ndarray) -> np.ndarray:
    """The 8-bit colormap input of each part index: uint8(I * 255/24) in float32, truncated."""
    return (part.astype(np.float32) * PART_SCALE).astype(np.uint8)


def _colour_parts(result: DensePoseResult, colormap: int, background_rgb: tuple[int, int, int]) -> np.ndarray:
    part = result.to_dense().I
    colours_bgr = cv2.applyColorMap(part_colormap_values(part), colormap)
    picture = np.empty_like(colours_bgr)
    picture[:] = background_rgb
    body = part > 0
    picture[body] = colours_bgr[body][:, ::-1]
    return picture


def viton(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """VITON-HD / HR-VITON / IDM-VTON `image-densepose`: OpenCV PARULA of I*255/24 on black,
    body pixels only (part 1 -> RGB (37, 60, 163), 12 -> (55, 185, 159), 24 -> (249, 251, 14)).
    These datasets hold one person per photo: `Predictor(..., top_person=True)` (`--top-person`)
    keeps only the best detection.
    `image` only gives the size; the result must be of that image."""
    check_size(image, result)
    return _colour_parts(result, cv2.COLORMAP_PARULA, (0, 0, 0))


# ControlNet's DensePose conditioning image: the preprocessor its DensePose models were trained
# with draws the try-on datasets' picture (PARULA of I*255/24 on black), every person.
controlnet = viton


def magicanimate(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """MagicAnimate motion frame: VIRIDIS of I*255/24 with the colormap's own zero colour,
    RGB (68, 1, 84), as background; every person."""
    check_size(image, result)
    return _colour_parts(result, cv2.COLORMAP_VIRIDIS, (68, 1, 84))


def idm_vton_input(image: np.ndarray) -> np.ndarray:
    """The 384x512 photo IDM-VTON's demo runs DensePose on: resized to 768x1024, then to
    384x512, both with PIL's bicubic filter (the aspect ratio is not kept, as in IDM-VTON)."""
    picture = Image.fromarray(image).resize(IDM_VTON_SIZE, Image.Resampling.BICUBIC)
    return np.asarray(picture.resize(IDM_VTON_DENSEPOSE_SIZE, Image.Resampling.BICUBIC))


def idm_vton_output(picture: np.ndarray) -> np.ndarray:
    """A picture rendered at 384x512 brought to IDM-VTON's 768x1024 (PIL bicubic, as its demo)."""
    return np.asarray(Image.fromarray(picture).resize(IDM_VTON_SIZE, Image.Resampling.BICUBIC))


def check_size(image: np.ndarray, result: DensePoseResult) -> None:
    """A one-line DensePoseError unless `result` is of an image of `image`'s size (every preset checks)."""
    if tuple(image.shape[:2]) != tuple(result.image_size):
        raise DensePoseError(f"image is {image.shape[1]}x{image.shape[0]} but the result is of a "
                         f"{result.image_size[1]}x{result.image_size[0]} image")
