"""The test-time flip: chart maps predicted on a mirrored image brought back to the original one
(`chart_symmetry`), and `Predictor(flip=True)` / `--flip` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import densepose_torch
from densepose_torch import Predictor, load_model
from densepose_torch.chart_symmetry import FlipSymmetry, mirror_boxes, mirror_chart_outputs
from densepose_torch.config import ModelConfig
from densepose_torch.definitions import COARSE_PART_SYMMETRY, NUM_PART_LABELS, PART_SYMMETRY
from densepose_torch.errors import DensePoseError
from densepose_torch.io.images import read_image
from densepose_torch.io.output_folder import RUN_RECORD
from densepose_torch.modeling import build_model
from densepose_torch.synthetic import uv_symmetry_tables

from .test_cli_predict import fake, run_cli, write_photos  # noqa: F401  (fake is a fixture)
from .test_inference import TINY

ASTRONAUT = Path(densepose_torch.__file__).parent / "assets" / "astronaut.png"


def charts_of_mirrored_image(parts: np.ndarray, u: np.ndarray, v: np.ndarray, symmetry: FlipSymmetry, seed: int = 0):
    """Raw head outputs (R, 25, S, S) that a perfect network would give on the mirrored image for
    people whose true charts are (parts, u, v) (R, S, S): the mirrored pixels' parts and U, V, as
    the point map of `symmetry` says, one-hot logits, and noise in every other U/V channel."""
    rng = np.random.default_rng(seed)
    mirrored_parts, mirrored_u, mirrored_v = symmetry.flip_points(parts[..., ::-1], u[..., ::-1], v[..., ::-1])
    one_hot = np.eye(NUM_PART_LABELS, dtype=np.float32)[mirrored_parts].transpose(0, 3, 1, 2)
    u_maps = rng.random(one_hot.shape, dtype=np.float32)
    v_maps = rng.random(one_hot.shape, dtype=np.float32)
    np.put_along_axis(u_maps, mirrored_parts[:, None], mirrored_u[:, None], axis=1)
    np.put_along_axis(v_maps, mirrored_parts[:, None], mirrored_v[:, None], axis=1)
    return {"fine_segm": torch.from_numpy(8.0 * one_hot), "u": torch.from_numpy(u_maps), "v": torch.from_numpy(v_maps),
            "coarse_segm": torch.from_numpy(rng.standard_normal((len(parts), 2) + parts.shape[1:]).astype(np.float32)),
            "sigma_2": torch.from_numpy(rng.random(one_hot.shape, dtype=np.float32))}


@pytest.mark.parametrize("tables", [False, True], ids=["synthetic-mirror-map", "uv-symmetry-tables"])
def test_mirrored_charts_come_back_to_the_true_parts_and_uv(tables):
    """Brought back, the mirrored pass gives every pixel its true part and U, V: exactly with the
    synthetic body's point map, within the tables' one bin (1/255) with UV_symmetry_transforms-style
    tables. A wrong channel order or U/V map puts left parts on the right."""
    rng = np.random.default_rng(1)
    parts = rng.integers(0, NUM_PART_LABELS, size=(3, 12, 12))
    u, v = rng.random(parts.shape, dtype=np.float32), rng.random(parts.shape, dtype=np.float32)
    exact = FlipSymmetry()
    outputs = charts_of_mirrored_image(parts, u, v, exact)
    back = mirror_chart_outputs(outputs, FlipSymmetry(*uv_symmetry_tables()) if tables else exact)

    np.testing.assert_array_equal(back["fine_segm"].argmax(1).numpy(), parts)
    body = parts > 0
    got_u = np.take_along_axis(back["u"].numpy(), parts[:, None], axis=1)[:, 0]
    got_v = np.take_along_axis(back["v"].numpy(), parts[:, None], axis=1)[:, 0]
    tolerance = 1.0 / 255 + 1e-6 if tables else 1e-6  # a table cell holds its bin's centre
    np.testing.assert_allclose(got_u[body], u[body], atol=tolerance)
    np.testing.assert_allclose(got_v[body], v[body], atol=tolerance)
    # per-part confidences follow their parts; 2-channel coarse maps are only mirrored
    np.testing.assert_array_equal(back["sigma_2"].numpy(), outputs["sigma_2"].numpy()[:, list(PART_SYMMETRY), :, ::-1])
    np.testing.assert_array_equal(back["coarse_segm"].numpy(), outputs["coarse_segm"].numpy()[..., ::-1])


def test_uv_tables_are_read_at_the_mirror_parts_table():
    """Channel p of the mirrored pass holds part PART_SYMMETRY[p]'s U, V, so its table is that
    part's. Our body's tables are the same for both sides of a pair, which cannot tell; here the
    first part of each pair halves U and its mirror part doubles it back."""
    u_tables, v_tables = uv_symmetry_tables()
    for part in range(1, NUM_PART_LABELS):
        mirror = PART_SYMMETRY[part]
        if part < mirror:
            u_tables[part - 1] = u_tables[part - 1] / 2
        elif part > mirror:
            u_tables[part - 1] = np.minimum(u_tables[part - 1] * 2, 1.0)
    halving = FlipSymmetry(u_tables, v_tables)
    rng = np.random.default_rng(2)
    parts = rng.integers(1, NUM_PART_LABELS, size=(2, 10, 10))
    lefts = parts < np.asarray(PART_SYMMETRY)[parts]  # the parts whose U the first flip halves
    u, v = rng.random(parts.shape, dtype=np.float32), rng.random(parts.shape, dtype=np.float32)
    back = mirror_chart_outputs(charts_of_mirrored_image(parts, u, v, halving), halving)
    got_u = np.take_along_axis(back["u"].numpy(), parts[:, None], axis=1)[:, 0]
    assert lefts.any()
    np.testing.assert_allclose(got_u[lefts], u[lefts], atol=3.0 / 255)  # two table bins, one of them doubled


def test_legacy_coarse_parts_swap_sides_and_keypoints_are_left_out():
    coarse = torch.randn(2, len(COARSE_PART_SYMMETRY), 5, 5)
    back = mirror_chart_outputs({"coarse_segm": coarse, "keypoints": torch.randn(2, 17, 5, 5)}, FlipSymmetry())
    assert set(back) == {"coarse_segm"}
    np.testing.assert_array_equal(back["coarse_segm"].numpy(), coarse.numpy()[:, list(COARSE_PART_SYMMETRY), :, ::-1])
    assert COARSE_PART_SYMMETRY[2] == 3  # a left/right pair does swap


def test_mirror_boxes():
    boxes = np.array([[10.0, 5.0, 30.5, 40.0], [0.0, 1.0, 100.0, 2.0]], np.float32)
    expected = [[69.5, 5.0, 90.0, 40.0], [0.0, 1.0, 100.0, 2.0]]
    np.testing.assert_array_equal(mirror_boxes(boxes, 100), expected)
    np.testing.assert_array_equal(mirror_boxes(torch.from_numpy(boxes), 100).numpy(), expected)
    np.testing.assert_array_equal(mirror_boxes(mirror_boxes(boxes, 100), 100), boxes)
    assert boxes[0, 0] == 10.0  # the input is left as it was


def uv_tables_file(folder: Path) -> Path:
    """Our synthetic body's mirror map written as DensePose's UV_symmetry_transforms.mat: MATLAB
    cell arrays of 24 double tables each."""
    u_tables, v_tables = uv_symmetry_tables()
    cells = {name: np.empty((1, 24), dtype=object) for name in ("U_transforms", "V_transforms")}
    for i in range(24):
        cells["U_transforms"][0, i], cells["V_transforms"][0, i] = u_tables[i].astype(np.float64), v_tables[i].astype(np.float64)
    path = folder / "UV_symmetry_transforms.mat"
    scipy.io.savemat(path, cells)
    return path


def mirror_agreement(model, device: str = "cpu", flip: bool = True, uv_symmetry: Path | None = None) -> float:
    """Share of body pixels whose part, in the charts of the astronaut in a fixed box, is the
    mirror part of the one found at the same place in her mirror image in the mirrored box. With
    the flip it must be all of them, on any device (the two predictions are the same two network
    runs, swapped); then U and V must match too where the mirror map is exact (no tables)."""
    image = read_image(ASTRONAUT)
    width = image.shape[1]
    predictor = Predictor(model, device=device, flip=flip, uv_symmetry=uv_symmetry)
    maps = predictor.predict_boxes(image, [[100, 20, 400, 500]]).to_dense()
    mirrored = predictor.predict_boxes(np.ascontiguousarray(image[:, ::-1]), [[width - 400, 20, width - 100, 500]]).to_dense()
    parts_back, u_back, v_back = FlipSymmetry().flip_points(mirrored.I[:, ::-1], mirrored.U[:, ::-1], mirrored.V[:, ::-1])
    body = (maps.I > 0) | (parts_back > 0)
    assert body.mean() > 0.05
    if flip:
        np.testing.assert_array_equal(maps.I, parts_back)
        if uv_symmetry is None:
            np.testing.assert_allclose(maps.U[body], u_back[body], atol=1e-5)
            np.testing.assert_allclose(maps.V[body], v_back[body], atol=1e-5)
    return float((maps.I == parts_back)[body].mean())


def test_flip_makes_the_default_model_mirror_consistent():
    """Without the flip the embedded model is far from mirror-consistent: on this photo it
    agrees on about a quarter of the pixels."""
    model = load_model(None)
    assert mirror_agreement(model, flip=False) < 0.9
    assert mirror_agreement(model) == 1.0


def test_flip_with_uv_tables_is_mirror_consistent_on_smpl_charts(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY)  # an untrained network on SMPL charts: consistency holds for any weights
    assert mirror_agreement(model, uv_symmetry=uv_tables_file(tmp_path)) == 1.0
    assert mirror_agreement(model, flip=False) < 0.9


def test_flip_keeps_boxes_and_scores_and_changes_charts():
    image = read_image(ASTRONAUT)
    model = load_model(None)
    plain, flipped = Predictor(model, min_score=0.5, flip=False)(image), Predictor(model, min_score=0.5, flip=True)(image)
    assert len(plain) >= 1
    np.testing.assert_array_equal(flipped.boxes, plain.boxes)
    np.testing.assert_array_equal(flipped.scores, plain.scores)
    assert not np.array_equal(flipped.charts[0].labels, plain.charts[0].labels)


def test_flip_settings_are_checked():
    """The embedded model flips unless told not to; a zoo model only when asked, with the mirror
    tables of its SMPL charts."""
    default_model = load_model(None)
    assert default_model.config.test_flip
    assert Predictor(default_model).flip_symmetry is not None and Predictor(default_model, flip=False).flip_symmetry is None
    smpl_model = build_model(ModelConfig())  # the zoo architecture, on DensePose's SMPL charts
    assert Predictor(smpl_model).flip_symmetry is None
    with pytest.raises(DensePoseError, match="UV_symmetry_transforms.mat"):
        Predictor(smpl_model, flip=True)
    with pytest.raises(DensePoseError, match="UV_symmetry_transforms.mat"):
        Predictor(build_model(ModelConfig(test_flip=True)))
    with pytest.raises(DensePoseError, match="only used by the test-time flip"):
        Predictor(smpl_model, uv_symmetry="UV_symmetry_transforms.mat")
    with pytest.raises(DensePoseError, match="built in"):
        Predictor(default_model, flip=True, uv_symmetry="UV_symmetry_transforms.mat")
    with pytest.raises(DensePoseError, match="no such UV symmetry file"):
        Predictor(smpl_model, flip=True, uv_symmetry="missing.mat")


def test_predict_flip_reaches_the_model_and_the_run_record(tmp_path, fake):  # noqa: F811  (fake is a fixture)
    photos = write_photos(tmp_path / "image", ["a.png"])
    out = tmp_path / "out"
    assert run_cli(photos, "-o", out, "--flip") == 0
    assert fake.choices[-1].flip and fake.choices[-1].uv_symmetry is None
    assert json.loads((out / RUN_RECORD).read_text())["settings"]["flip"] == "on"
    assert run_cli(photos, "-o", out, "--no-flip") != 0  # other options than the folder's outputs: refused
    assert run_cli(photos, "-o", tmp_path / "off", "--no-flip") == 0 and fake.choices[-1].flip is False
    assert run_cli(photos, "-o", tmp_path / "own") == 0 and fake.choices[-1].flip is None
