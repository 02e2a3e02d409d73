"""The pictures of detectron2 DensePose `apply_net.py show`, for people who compare with it.

Every render starts, as apply_net does, from the photo turned gray (OpenCV's BGR->gray, copied
into three channels) and draws each detection in the result's order, which is descending score:
a lower-scoring detection is drawn later and covers a higher-scoring one where they overlap.
Detection geometry is apply_net's: the box as float32 XYWH, each of x, y, w, h truncated to int.

Reproduced details of detectron2's arithmetic:
* a chart becomes 8-bit as torch casts it: [I, U*255, V*255] in float32, truncated, without
  clamping (UV slightly outside [0, 1] wraps around as torch's uint8 cast does on CPU);
* colormap input = clip(value * scale, 0, 255) truncated to uint8 (scale 255/24 for parts);
* the blend is photo * (1 - 0.7) + colours * 0.7 in float64, truncated to uint8, over the whole
  box (background pixels blend with themselves and can lose one level);
* a chart whose size differs from the integer box is resized to it bilinearly, mask and values
  alike (apply_net passes its nearest-neighbour flag where cv2.resize expects `dst`, so OpenCV
  falls back to bilinear for both).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..definitions import NUM_PARTS, PARTS
from ..results import ChartResult, DensePoseResult, image_window
from .datasets import check_size
from .texture import atlas_tiles, default_texture_atlas, texel_in_tile

ALPHA = 0.7
PART_VALUE_SCALE = 255.0 / NUM_PARTS
BOX_COLOUR_BGR = (18, 127, 15)
SCORE_COLOUR_BGR = (218, 227, 218)
SCORE_FONT_SCALE = 0.35
CONTOUR_LEVELS = np.linspace(0.0, 1.0, 10)


def gray_canvas(image: np.ndarray) -> np.ndarray:
    """apply_net's drawing surface: the photo in gray, as three identical (BGR) channels."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2)


def boxes_xywh(result: DensePoseResult) -> np.ndarray:
    """(N, 4) float32 XYWH boxes, computed in float32 as detectron2's BoxMode conversion."""
    boxes = result.boxes.astype(np.float32).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def chart_iuv_uint8(chart: ChartResult) -> np.ndarray:
    """(3, h, w) uint8 [I, U*255, V*255] as detectron2's `.type(torch.uint8)`: float32 product,
    truncated toward zero, wrapped modulo 256 (no clamping)."""
    scaled = chart.uv.astype(np.float32) * np.float32(255.0)
    uv = (np.trunc(scaled).astype(np.int64) & 0xFF).astype(np.uint8)
    return np.concatenate([chart.labels.astype(np.uint8)[None], uv], axis=0)


def _integer_box(box_xywh: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = (int(value) for value in box_xywh)
    return x, y, w, h


def _paint_masked_colormap(canvas: np.ndarray, mask: np.ndarray, matrix: np.ndarray, box_xywh: np.ndarray, value_scale: float) -> None:
    x, y, w, h = _integer_box(box_xywh)
    if w <= 0 or h <= 0:
        return
    if mask.shape != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    if matrix.shape != (h, w):
        matrix = cv2.resize(matrix, (w, h), interpolation=cv2.INTER_LINEAR)
    window = image_window(x, y, w, h, canvas.shape)
    if window is None:
        return
    (rows, cols), (box_rows, box_cols) = window.image, window.box
    scaled = (matrix.astype(np.float32) * value_scale).clip(0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(scaled, cv2.COLORMAP_PARULA)[box_rows, box_cols]
    region = canvas[rows, cols]
    background = mask[box_rows, box_cols] == 0
    colours[background] = region[background]
    canvas[rows, cols] = region * (1.0 - ALPHA) + colours * ALPHA


def _masked_colormap(image: np.ndarray, result: DensePoseResult, channel: int, value_scale: float) -> np.ndarray:
    check_size(image, result)
    canvas = gray_canvas(image)
    for chart, box in zip(result.charts, boxes_xywh(result)):
        iuv = chart_iuv_uint8(chart)
        mask = (iuv[0] > 0).astype(np.uint8)
        _paint_masked_colormap(canvas, mask, iuv[channel], box, value_scale)
    return canvas[:, :, ::-1].copy()


def dp_segm(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """apply_net `dp_segm`: PARULA of the part index (I * 255/24) blended at 0.7 on the gray photo."""
    return _masked_colormap(image, result, 0, PART_VALUE_SCALE)


def dp_u(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """apply_net `dp_u`: PARULA of U*255 on body pixels, blended at 0.7 on the gray photo."""
    return _masked_colormap(image, result, 1, 1.0)


def dp_v(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """apply_net `dp_v`: PARULA of V*255 on body pixels, blended at 0.7 on the gray photo."""
    return _masked_colormap(image, result, 2, 1.0)


# A marching-squares cell has corners v0 = (i, j), v1 = (i+1, j), v2 = (i+1, j+1), v3 = (i, j+1);
# its code sums 1, 2, 4, 8 over the corners at or above the level. Each code names the cell edges
# the iso-line crosses, as pairs of corner indices, in the order apply_net draws them.
_LEFT, _TOP, _BOTTOM, _RIGHT = (0, 1), (0, 3), (1, 2), (3, 2)
_CELL_SEGMENTS = {
    1: [(_LEFT, _TOP)], 14: [(_LEFT, _TOP)],
    2: [(_LEFT, _BOTTOM)], 13: [(_LEFT, _BOTTOM)],
    3: [(_TOP, _BOTTOM)], 12: [(_TOP, _BOTTOM)],
    4: [(_BOTTOM, _RIGHT)], 11: [(_BOTTOM, _RIGHT)],
    6: [(_LEFT, _RIGHT)], 9: [(_LEFT, _RIGHT)],
    7: [(_TOP, _RIGHT)], 8: [(_TOP, _RIGHT)],
    5: [(_LEFT, _BOTTOM), (_TOP, _RIGHT)],
    10: [(_TOP, _LEFT), (_BOTTOM, _RIGHT)],
}
def _edge_point(values: np.ndarray, level: float, i: int, j: int, edge: tuple[int, int], cells_x: int, cells_y: int) -> tuple[float, float]:
    """Where the level crosses an edge of cell (i, j), in box-relative [0, 1] coordinates (x, y),
    with apply_net's float64 arithmetic."""
    corners = (values[i, j], values[i + 1, j], values[i + 1, j + 1], values[i, j + 1])
    start, end = edge
    t = (level - corners[start]) / (corners[end] - corners[start])
    left, top = float(j) / cells_x, float(i) / cells_y
    width, height = 1.0 / cells_x, 1.0 / cells_y
    if edge == _LEFT:
        return left, top + t * height
    if edge == _TOP:
        return left + t * width, top
    if edge == _BOTTOM:
        return left + t * width, top + height
    return left + width, top + t * height


def _draw_contours(canvas: np.ndarray, values: np.ndarray, labels: np.ndarray, box_xywh: np.ndarray, colours_bgr: list[tuple[int, int, int]]) -> None:
    x0, y0 = box_xywh[0], box_xywh[1]
    x1, y1 = np.float32(x0 + box_xywh[2]), np.float32(y0 + box_xywh[3])
    span_x, span_y = float(np.float32(x1 - x0)), float(np.float32(y1 - y0))
    cells_x, cells_y = values.shape[1] - 1, values.shape[0] - 1
    for part in PARTS:
        mask = labels == part
        if not mask.any():
            continue
        lowest, highest = values[mask].min(), values[mask].max()
        rows, cols = np.nonzero(mask)
        i0, i1, j0, j1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        if j1 == j0 + 1 or i1 == i0 + 1:
            continue
        inside = mask[i0:i1, j0:j1]
        inside_code = inside[:-1, :-1] + inside[1:, :-1] * 2 + inside[1:, 1:] * 4 + inside[:-1, 1:] * 8
        for level, colour in zip(CONTOUR_LEVELS, colours_bgr):
            if level < lowest or level > highest:
                continue
            above = values[i0:i1, j0:j1] >= level
            code = above[:-1, :-1] + above[1:, :-1] * 2 + above[1:, 1:] * 4 + above[:-1, 1:] * 8
            for ci, cj in np.argwhere((code != 0) & (code != 15) & (inside_code != 0)):
                i, j = int(ci + i0), int(cj + j0)
                for edge_a, edge_b in _CELL_SEGMENTS[int(code[ci, cj])]:
                    (ax, ay), (bx, by) = (_edge_point(values, level, i, j, edge, cells_x, cells_y) for edge in (edge_a, edge_b))
                    start = (int(float(x0) + ax * span_x), int(float(y0) + ay * span_y))
                    end = (int(float(x0) + bx * span_x), int(float(y0) + by * span_y))
                    cv2.line(canvas, start, end, colour, 1)


def dp_contour(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """apply_net `dp_contour` (its drawing without matplotlib): iso-lines of U then V at the 10
    levels linspace(0, 1, 10) inside each part, coloured PARULA(level * 255), one pixel wide, on
    the gray photo. With matplotlib installed apply_net plots `plt.contour` instead."""
    check_size(image, result)
    canvas = gray_canvas(image)
    level_colours = cv2.applyColorMap((CONTOUR_LEVELS * 255).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_PARULA)
    colours_bgr = [tuple(int(c) for c in colour) for colour in level_colours.reshape(-1, 3)]
    for chart, box in zip(result.charts, boxes_xywh(result)):
        iuv = chart_iuv_uint8(chart)
        for channel in (1, 2):
            _draw_contours(canvas, iuv[channel].astype(np.float64) / 255.0, iuv[0], box, colours_bgr)
    return canvas[:, :, ::-1].copy()


def bbox(image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    """apply_net `bbox`: each box as a 1-pixel rectangle, BGR (18, 127, 15), and its score as
    "{:6.4f}" with the text's baseline at the box's top-left corner, on the gray photo."""
    check_size(image, result)
    canvas = gray_canvas(image)
    for (x, y, w, h), score in zip(boxes_xywh(result), result.scores):
        cv2.rectangle(canvas, (int(x), int(y)), (int(x + w), int(y + h)), BOX_COLOUR_BGR, 1)
        cv2.putText(canvas, "{0:6.4f}".format(float(score)), (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX,
                    SCORE_FONT_SCALE, SCORE_COLOUR_BGR, 1, cv2.LINE_AA)
    return canvas[:, :, ::-1].copy()


def dp_iuv_texture(image: np.ndarray, result: DensePoseResult, atlas: np.ndarray | None = None) -> np.ndarray:
    """apply_net `dp_iuv_texture`: every body pixel of part p takes texel (int((1-V)*(N-1)),
    int(U*(N-1))) of tile p of the atlas (UV clamped to [0, 1]), blended by the texel's alpha,
    on the gray photo. `atlas`: RGB(A) in the layout of `render.texture` (default: the generated
    checkerboard atlas)."""
    check_size(image, result)
    tiles_rgb, alpha = atlas_tiles(default_texture_atlas() if atlas is None else atlas)
    tiles = tiles_rgb[..., ::-1]  # the canvas is BGR
    tile_size = tiles.shape[1]
    canvas = gray_canvas(image)
    for chart, box in zip(result.charts, boxes_xywh(result)):
        x, y, w, h = _integer_box(box)
        window = image_window(x, y, min(w, chart.width), min(h, chart.height), canvas.shape)
        if window is None:
            continue
        (rows, cols), (box_rows, box_cols) = window.image, window.box
        labels = chart.labels[box_rows, box_cols]
        uv = chart.uv[:, box_rows, box_cols]
        painted = canvas[rows, cols].copy()
        for part in PARTS:
            body = labels == part
            if not body.any():
                continue
            texel_y, texel_x = texel_in_tile(uv[0][body], uv[1][body], tile_size)
            cover = alpha[part - 1, texel_y, texel_x][:, None]
            painted[body] = painted[body] * (1 - cover) + tiles[part - 1, texel_y, texel_x] * cover
        canvas[rows, cols] = painted
    return canvas[:, :, ::-1].copy()
