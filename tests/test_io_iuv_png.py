"""Caffe2-style `_IUV.png` / `_INDS.png`: channel order on disk and agreement with the original
DensePose demo output (../shared/data/demo_im_IUV.png, CC BY-NC, read in place, never copied)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from densepose_torch.errors import DensePoseError
from densepose_torch.io.iuv_png import iuv_array, read_inds_png, read_iuv_png, write_inds_png, write_iuv_png
from densepose_torch.results import DenseMaps

from .shared import shared_path


def sample_maps():
    part = np.array([[0, 1, 12], [24, 3, 0]], np.uint8)
    u = np.array([[0.0, 0.5, 1.0], [0.2, 1.3, 0.0]], np.float32)  # 127.5 -> 127; 1.3 clips to 255
    v = np.array([[0.0, 0.25, 0.999], [-0.1, 0.01, 0.0]], np.float32)  # 63.75 -> 63; 254.7 -> 254; < 0 -> 0
    instance = np.array([[0, 1, 1], [2, 2, 0]], np.uint16)
    return DenseMaps(I=part, U=u, V=v, instance=instance)


def test_disk_order_is_blue_i_green_u_red_v(tmp_path):
    path = write_iuv_png(tmp_path / "x_IUV.png", sample_maps())
    bgr = cv2.imread(str(path))  # OpenCV gives the written array back: I, U, V
    assert np.array_equal(bgr[:, :, 0], [[0, 1, 12], [24, 3, 0]])
    assert np.array_equal(bgr[:, :, 1], [[0, 127, 255], [51, 255, 0]])
    assert np.array_equal(bgr[:, :, 2], [[0, 63, 254], [0, 2, 0]])
    rgb = np.asarray(Image.open(path).convert("RGB"))  # what viewers show: R = V, G = U, B = I
    assert np.array_equal(rgb[:, :, 2], bgr[:, :, 0]) and np.array_equal(rgb[:, :, 0], bgr[:, :, 2])


def test_inds_is_the_one_based_instance_index(tmp_path):
    path = write_inds_png(tmp_path / "x_INDS.png", sample_maps())
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.ndim == 2
    assert np.array_equal(read_inds_png(path), sample_maps().instance)


def test_more_than_255_instances_need_16_bits(tmp_path):
    instance = np.arange(300, dtype=np.uint16).reshape(15, 20)
    maps = DenseMaps(I=np.ones((15, 20), np.uint8), U=np.zeros((15, 20), np.float32), V=np.zeros((15, 20), np.float32), instance=instance)
    path = write_inds_png(tmp_path / "many_INDS.png", maps)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert np.array_equal(read_inds_png(path), instance)


def test_read_then_write_gives_the_same_pixels(tmp_path):
    path = write_iuv_png(tmp_path / "a_IUV.png", sample_maps())
    part, u, v = read_iuv_png(path)
    again = write_iuv_png(tmp_path / "b_IUV.png", DenseMaps(I=part, U=u, V=v, instance=np.zeros_like(part, np.uint16)))
    assert np.array_equal(cv2.imread(str(path)), cv2.imread(str(again)))


def test_original_caffe2_demo_files_read_as_i_u_v_and_write_back_identically(tmp_path):
    demo_iuv, demo_inds = shared_path("data", "demo_im_IUV.png"), shared_path("data", "demo_im_INDS.png")
    part, u, v = read_iuv_png(demo_iuv)
    inds = read_inds_png(demo_inds)
    assert part.shape == inds.shape == (600, 1116)
    assert set(np.unique(part)) == set(range(25))  # parts only in channel 0
    assert u.min() == 0 and u.max() == 1 and v.max() == 1
    assert np.array_equal(part > 0, inds > 0)  # body pixels and instance pixels coincide
    assert not u[part == 0].any() and not v[part == 0].any()
    maps = DenseMaps(I=part, U=u, V=v, instance=inds)
    assert np.array_equal(iuv_array(maps), cv2.imread(str(demo_iuv)))
    written = write_iuv_png(tmp_path / "demo_IUV.png", maps)
    assert np.array_equal(cv2.imread(str(written)), cv2.imread(str(demo_iuv)))


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(DensePoseError, match="cannot read IUV image"):
        read_iuv_png(tmp_path / "missing_IUV.png")
    cv2.imwrite(str(tmp_path / "gray.png"), np.zeros((3, 3), np.uint8))
    with pytest.raises(DensePoseError, match="not an IUV image"):
        read_iuv_png(tmp_path / "gray.png")
