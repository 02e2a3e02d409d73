"""Render presets: colours checked against OpenCV's colormaps and golden pixels of hand-made
DensePoseResults. Expected values are written out from the formulas the presets reproduce
(detectron2 apply_net's arithmetic, the datasets' colour rules), not computed by the code under test."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from densepose_torch.errors import DensePoseError
from densepose_torch.render import (
    PRESETS,
    bbox,
    controlnet,
    default_texture_atlas,
    dp_contour,
    dp_iuv_texture,
    dp_segm,
    dp_u,
    dp_v,
    idm_vton_input,
    idm_vton_output,
    load_texture_atlas,
    magicanimate,
    viton,
)
from densepose_torch.results import ChartResult, DensePoseResult


def person(box, labels, u=None, v=None):
    """A chart for an XYXY box, anchored and sized as detectron2 does (int x, int y, int w, int h)."""
    x0, y0, x1, y1 = box
    height, width = max(int(y1 - y0), 1), max(int(x1 - x0), 1)
    labels = np.broadcast_to(np.asarray(labels, np.uint8), (height, width)).copy()
    u = np.broadcast_to(np.asarray(0.0 if u is None else u, np.float32), (height, width))
    v = np.broadcast_to(np.asarray(0.0 if v is None else v, np.float32), (height, width))
    uv = np.stack([u, v]).astype(np.float32) * (labels > 0)
    return ChartResult(x=int(x0), y=int(y0), labels=labels, uv=uv)


def result_of(size, boxes, scores, charts):
    return DensePoseResult(image_size=size, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                           scores=np.asarray(scores, np.float32), charts=list(charts))


def parula_rgb(value: int) -> tuple[int, int, int]:
    bgr = cv2.applyColorMap(np.array([[value]], np.uint8), cv2.COLORMAP_PARULA)[0, 0]
    return tuple(int(c) for c in bgr[::-1])


def viridis_rgb(value: int) -> tuple[int, int, int]:
    bgr = cv2.applyColorMap(np.array([[value]], np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    return tuple(int(c) for c in bgr[::-1])


def gray_photo(height=40, width=50, value=100):
    return np.full((height, width, 3), value, np.uint8)


# ---------------------------------------------------------------- dataset presets


def test_viton_colours_are_the_datasets_and_opencv_parula():
    labels = np.zeros((4, 24), np.uint8)
    labels[1] = np.arange(1, 25)
    chart = ChartResult(x=3, y=5, labels=labels, uv=np.zeros((2, 4, 24), np.float32))
    result = result_of((12, 30), [[3, 5, 27, 9]], [0.99], [chart])
    picture = viton(gray_photo(12, 30), result)
    # The three colours the issue quotes from VITON-HD / HR-VITON image-densepose files.
    assert tuple(picture[6, 3]) == (37, 60, 163)  # part 1
    assert tuple(picture[6, 3 + 11]) == (55, 185, 159)  # part 12
    assert tuple(picture[6, 3 + 23]) == (249, 251, 14)  # part 24
    for part in range(1, 25):
        # uint8(part * 255 / 24) truncated: 10, 21, ..., 127 (12), ..., 255 (24)
        assert tuple(picture[6, 2 + part]) == parula_rgb(int(part * 255 // 24)), part
    body = np.zeros((12, 30), bool)
    body[6, 3:27] = True
    assert (picture[~body] == 0).all()  # black background, alpha 1: nothing of the photo shows


def test_magicanimate_uses_viridis_and_its_zero_colour_as_background():
    result = result_of((10, 10), [[2, 2, 6, 6]], [0.9], [person((2, 2, 6, 6), np.tile([[24, 12], [0, 1]], (2, 2)))])
    picture = magicanimate(gray_photo(10, 10), result)
    assert viridis_rgb(0) == (68, 1, 84)
    assert tuple(picture[0, 0]) == (68, 1, 84)
    assert tuple(picture[2, 2]) == viridis_rgb(255) == (253, 231, 37)
    assert tuple(picture[2, 3]) == viridis_rgb(127)
    assert tuple(picture[3, 2]) == (68, 1, 84)  # label 0 inside the box is background
    assert tuple(picture[3, 3]) == viridis_rgb(10)


def two_overlapping_people():
    """Person A (score 0.95, part 3) and person B (score 0.90, part 20) overlap on columns 6..9."""
    a = person((2, 2, 10, 8), 3, u=0.25, v=0.5)
    b = person((6, 2, 14, 8), 20, u=0.75, v=0.5)
    return result_of((12, 16), [[2, 2, 10, 8], [6, 2, 14, 8]], [0.95, 0.90], [a, b])


def test_dataset_presets_give_an_overlap_to_the_higher_score():
    result = two_overlapping_people()
    picture = viton(gray_photo(12, 16), result)
    assert tuple(picture[4, 7]) == parula_rgb(31)  # part 3: uint8(3 * 10.625) = 31, person A
    assert tuple(picture[4, 12]) == parula_rgb(212)  # part 20 = 212.5 -> 212, person B
    assert np.array_equal(controlnet(gray_photo(12, 16), result), picture)


def test_apply_net_presets_let_the_later_lower_score_detection_cover_an_overlap():
    result = two_overlapping_people()
    picture = dp_segm(gray_photo(12, 16), result)
    after_a = [int(100 * (1.0 - 0.7) + c * 0.7) for c in parula_rgb(31)]  # A first (higher score)
    after_b = tuple(int(a * (1.0 - 0.7) + c * 0.7) for a, c in zip(after_a, parula_rgb(212)))  # then B over it
    assert tuple(picture[4, 7]) == after_b
    assert tuple(picture[4, 4]) == tuple(after_a)


def test_idm_vton_sizes():
    photo = np.random.default_rng(0).integers(0, 256, (300, 200, 3), np.uint8)
    assert idm_vton_input(photo).shape == (512, 384, 3)
    assert idm_vton_output(np.zeros((512, 384, 3), np.uint8)).shape == (1024, 768, 3)


def test_size_mismatch_is_a_one_line_error():
    result = result_of((10, 10), [[2, 2, 6, 6]], [0.9], [person((2, 2, 6, 6), 1)])
    for render in PRESETS.values():
        with pytest.raises(DensePoseError, match="result is of a 10x10 image"):
            render(gray_photo(12, 10), result)


# ---------------------------------------------------------------- apply_net presets


def test_segm_blends_parula_on_the_gray_photo_with_apply_nets_truncations():
    photo = np.zeros((20, 30, 3), np.uint8)
    photo[:] = (200, 50, 10)  # gray = 0.299 R + 0.587 G + 0.114 B = 90.29 -> 90 (OpenCV rounds)
    labels = np.zeros((6, 8), np.uint8)
    labels[1:5, 1:7] = 1
    box = (5.7, 4.2, 13.9, 10.9)  # int x, y, w, h = 5, 4, 8, 6
    result = result_of((20, 30), [box], [0.9], [ChartResult(5, 4, labels, np.zeros((2, 6, 8), np.float32))])
    picture = dp_segm(photo, result)
    gray = 90
    assert tuple(picture[0, 0]) == (gray, gray, gray)  # outside every box: the gray photo
    body = tuple(int(gray * (1.0 - 0.7) + c * 0.7) for c in parula_rgb(10))  # part 1 -> 10
    assert tuple(picture[4 + 1, 5 + 1]) == body
    in_box_background = int(gray * (1.0 - 0.7) + gray * 0.7)  # the whole box is blended
    assert tuple(picture[4, 5]) == (in_box_background,) * 3


@pytest.mark.parametrize("gray", [100, 90, 57, 255])
def test_box_background_blends_with_itself_in_float64(gray):
    # photo * 0.30000000000000004 + photo * 0.7 can fall just under the photo value; apply_net
    # truncates it. The expected value is that float64 expression written out.
    labels = np.zeros((3, 3), np.uint8)
    result = result_of((8, 8), [[1, 1, 4, 4]], [0.9], [ChartResult(1, 1, labels, np.zeros((2, 3, 3), np.float32))])
    picture = dp_segm(gray_photo(8, 8, gray), result)
    assert picture[2, 2, 0] == int(gray * (1.0 - 0.7) + gray * 0.7)


def test_u_and_v_use_value_times_255_truncated_and_wrap_without_clamping():
    u = np.array([[0.5, 1.0, 1.004, 0.2]], np.float32)  # 127.5 -> 127, 255, 256.02 -> 256 -> wraps to 0, 51
    v = np.array([[0.0, 0.25, 0.75, 1.0]], np.float32)
    chart = ChartResult(2, 3, np.full((1, 4), 7, np.uint8), np.stack([u, v]))
    result = result_of((8, 10), [[2, 3, 6, 4]], [0.9], [chart])
    photo = gray_photo(8, 10, 0)  # black photo: the blend is colour * 0.7
    for render, values in ((dp_u, (127, 255, 0, 51)), (dp_v, (0, 63, 191, 255))):
        picture = render(photo, result)
        for column, value in enumerate(values):
            assert tuple(picture[3, 2 + column]) == tuple(int(c * 0.7) for c in parula_rgb(value)), (render.__name__, column)


def test_bbox_draws_apply_nets_rectangle_and_score():
    box = (10.7, 20.2, 50.9, 60.5)  # rectangle (10, 20) - (int(10.7 + 40.2), int(20.2 + 40.3)) = (50, 60)
    result = result_of((80, 100), [box], [0.987654], [person(box, 1)])
    picture = bbox(gray_photo(80, 100), result)
    green = (15, 127, 18)  # apply_net's BGR (18, 127, 15)
    for row, column in ((40, 10), (40, 50), (20, 30), (60, 30), (20, 10), (60, 50)):
        assert tuple(picture[row, column]) == green, (row, column)
    assert tuple(picture[40, 30]) == (100, 100, 100)
    assert tuple(picture[40, 51]) == (100, 100, 100)
    text = picture[5:20, 10:60]  # "0.9877" sits on the box's top edge, above it
    assert (text != 100).any()
    assert text.max() <= 227  # the text colour (218, 227, 218), anti-aliased on gray 100


def test_contour_draws_u_isolines_where_marching_squares_puts_them():
    # A 3x3 part with U = 0, 0.2, 0.4 by column and V constant. Levels k/9 inside [0, 0.4] are
    # 1/9, 2/9, 3/9 (level 0 only touches the minimum: every cell is above it). Crossings:
    # 1/9 at x = 0.5556 * 0.5 = 0.278 of the box, 2/9 at 0.5 + 0.111 * 0.5 = 0.556, 3/9 at
    # 0.5 + 0.667 * 0.5 = 0.833; the box is x0 = 10, w = 3, so columns int(10 + 3x) = 10, 11, 12,
    # each line from row int(10 + 0) to int(10 + 3) = 13 in two cell-high pieces.
    u = np.tile(np.array([0.0, 0.2, 0.4], np.float32), (3, 1))
    v = np.full((3, 3), 0.5, np.float32)  # one value: no V level lies between its min and max
    chart = ChartResult(10, 10, np.ones((3, 3), np.uint8), np.stack([u, v]))
    result = result_of((30, 30), [[10, 10, 13, 13]], [0.9], [chart])
    picture = dp_contour(gray_photo(30, 30), result)
    changed = np.argwhere((picture != 100).any(axis=2))
    expected = {(row, column) for column in (10, 11, 12) for row in range(10, 14)}
    assert {tuple(p) for p in changed} == expected
    for column, level_value in ((10, 28), (11, 56), (12, 85)):  # uint8(k/9 * 255)
        assert tuple(picture[11, column]) == parula_rgb(level_value)


def test_texture_takes_texels_by_u_and_one_minus_v_from_the_parts_tile():
    tile = 200
    atlas = np.zeros((6 * tile, 4 * tile, 3), np.uint8)
    columns, rows = np.meshgrid(np.arange(tile), np.arange(tile))
    # Part 2 is tile 1 = column 0, row 1; part 7 is tile 6 = column 1, row 0.
    atlas[tile : 2 * tile, 0:tile] = np.stack([columns, rows, np.full_like(rows, 7)], axis=2)
    atlas[0:tile, tile : 2 * tile] = (9, 8, 7)
    u = np.array([[0.5, 1.2, 0.0]], np.float32)
    v = np.array([[0.25, 0.5, 1.0]], np.float32)
    labels = np.array([[2, 2, 7]], np.uint8)
    result = result_of((6, 8), [[1, 2, 4, 3]], [0.9], [ChartResult(1, 2, labels, np.stack([u, v]))])
    picture = dp_iuv_texture(gray_photo(6, 8), result, atlas=atlas)
    assert tuple(picture[2, 1]) == (99, 149, 7)  # x = int(0.5 * 199) = 99, y = int(0.75 * 199) = 149
    assert tuple(picture[2, 2]) == (199, 99, 7)  # U clamped to 1 -> 199; y = int(0.5 * 199) = 99
    assert tuple(picture[2, 3]) == (9, 8, 7)
    assert tuple(picture[0, 0]) == (100, 100, 100)


def test_texture_alpha_channel_blends_and_black_texels_of_rgb_atlases_are_transparent(tmp_path):
    tile = 10
    rgba = np.zeros((6 * tile, 4 * tile, 4), np.uint8)
    rgba[0:tile, 0:tile] = (200, 0, 0, 128)  # part 1: half-transparent red
    path = tmp_path / "atlas.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    atlas = load_texture_atlas(path)
    assert atlas.shape == (60, 40, 4)
    result = result_of((4, 4), [[0, 0, 2, 2]], [0.9], [person((0, 0, 2, 2), [[1, 2], [1, 2]], u=0.5, v=0.5)])
    picture = dp_iuv_texture(gray_photo(4, 4), result, atlas=atlas)
    a = 128 / 255.0
    assert tuple(picture[0, 0]) == (int(100 * (1 - a) + 200 * a), int(100 * (1 - a)), int(100 * (1 - a)))
    rgb_black_part2 = dp_iuv_texture(gray_photo(4, 4), result, atlas=np.zeros((60, 40, 3), np.uint8))
    assert tuple(rgb_black_part2[0, 1]) == (100, 100, 100)


def test_bad_texture_atlas_is_a_one_line_error(tmp_path):
    path = tmp_path / "wrong.png"
    cv2.imwrite(str(path), np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(DensePoseError, match="4 tiles wide and 6 high"):
        load_texture_atlas(path)
    with pytest.raises(DensePoseError, match="no such texture atlas"):
        load_texture_atlas(tmp_path / "missing.png")


def test_default_atlas_has_24_distinct_tiles_in_the_layout():
    atlas = default_texture_atlas()
    assert atlas.shape == (1200, 800, 3) and atlas.dtype == np.uint8
    tiles = [atlas[200 * row : 200 * (row + 1), 200 * column : 200 * (column + 1)] for column in range(4) for row in range(6)]
    means = {tuple(np.round(tile.reshape(-1, 3).mean(axis=0))) for tile in tiles}
    assert len(means) == 24
    assert (atlas.reshape(-1, 3).sum(axis=1) > 0).all()  # no transparent (black) texel


def test_every_preset_returns_an_rgb_picture_of_the_photo_size():
    result = two_overlapping_people()
    for name, render in PRESETS.items():
        picture = render(gray_photo(12, 16), result)
        assert picture.shape == (12, 16, 3) and picture.dtype == np.uint8, name
