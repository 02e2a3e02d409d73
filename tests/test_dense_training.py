"""Training on every body pixel (dense synthetic truth), real-photo backgrounds and the photo look."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from densepose_torch.chart_symmetry import FlipSymmetry
from densepose_torch.config import ModelConfig
from densepose_torch.data.dense_truth import BoxDenseTruth, box_dense_truth, flip_dense_truth
from densepose_torch.definitions import PART_SYMMETRY
from densepose_torch.errors import DensePoseError
from densepose_torch.results import DenseMaps
from densepose_torch.synthetic.backgrounds import SCIKIT_IMAGE_PHOTOS, bundled_backgrounds
from densepose_torch.synthetic.scene import SceneConfig, SceneGenerator, list_backgrounds
from densepose_torch.training.config import LossConfig
from densepose_torch.training.losses import (
    DensePoseTargets,
    DenseTargets,
    dense_chart_losses,
    densepose_losses,
    resample_dense_truth,
)


def _maps(size: int = 40) -> DenseMaps:
    """Two people: instance 1 in columns 0..19 (part = row // 2 + 1), instance 2 in 20..39."""
    rows, cols = np.mgrid[0:size, 0:size]
    instance = np.where(cols < size // 2, 1, 2).astype(np.uint16)
    parts = (rows // 2 + 1).astype(np.uint8)
    return DenseMaps(parts, (cols / size).astype(np.float32), (rows / size).astype(np.float32), instance)


def test_box_dense_truth_reads_the_persons_pixels_at_cell_centres():
    maps = _maps()
    truth = box_dense_truth(maps, 1, np.array([10.0, 4.0, 30.0, 24.0]), size=20)
    # Cell (i, j) centre: x = 10 + j + 0.5, y = 4 + i + 0.5 -> pixel (4 + i, 10 + j).
    assert truth.parts[0, 0] == maps.I[4, 10] and truth.u[3, 5] == pytest.approx(15 / 40) and truth.v[3, 5] == pytest.approx(7 / 40)
    assert (truth.parts[:, 10:] == 0).all() and (truth.u[:, 10:] == 0).all()  # instance 2's pixels: no supervision
    assert (truth.parts[:, :10] > 0).all()
    outside = box_dense_truth(maps, 1, np.array([-20.0, 0.0, 20.0, 40.0]), size=40)
    assert (outside.parts[:, :20] == 0).all() and (outside.parts[:, 20:] > 0).all()


def test_flipping_dense_truth_mirrors_cells_and_swaps_sides():
    size = 8
    parts = np.zeros((size, size), np.uint8)
    parts[:, :3] = 3  # the right foot
    u = np.tile(np.linspace(0.1, 0.9, size, dtype=np.float32), (size, 1))
    truth = BoxDenseTruth(parts, u * (parts > 0), u.T * (parts > 0))
    flipped = flip_dense_truth(truth, FlipSymmetry().flip_points)
    assert (flipped.parts[:, -3:] == PART_SYMMETRY[3]).all() and (flipped.parts[:, :-3] == 0).all()
    back = flip_dense_truth(flipped, FlipSymmetry().flip_points)
    np.testing.assert_array_equal(back.parts, truth.parts)
    np.testing.assert_allclose(back.u, truth.u, atol=2e-3)  # the mirror map is a table lookup
    np.testing.assert_allclose(back.v, truth.v, atol=2e-3)


def _dense_targets(parts: torch.Tensor, u: torch.Tensor, v: torch.Tensor, est, gt) -> DensePoseTargets:
    n = parts.shape[0]
    return DensePoseTargets(
        est_boxes=torch.tensor(est, dtype=torch.float32), gt_boxes=torch.tensor(gt, dtype=torch.float32),
        point_roi=torch.zeros(0, dtype=torch.int64), x=torch.zeros(0), y=torch.zeros(0), parts=torch.zeros(0, dtype=torch.int64),
        u=torch.zeros(0), v=torch.zeros(0), coarse_segm=None,
        dense=DenseTargets(torch.ones(n, dtype=torch.bool), parts, u, v),
    )


def test_dense_truth_is_resampled_to_the_proposal_cells():
    d = 16
    parts = torch.arange(d)[None, :, None].expand(1, d, d).clone() % 24 + 1  # part = row + 1
    u = torch.arange(d, dtype=torch.float32)[None, None, :].expand(1, d, d) / d  # u = column / d
    truth = DenseTargets(torch.ones(1, dtype=torch.bool), parts, u, u.transpose(1, 2))
    same, u_same, _ = resample_dense_truth(truth, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([[0.0, 0.0, 32.0, 32.0]]), d)
    assert torch.equal(same, parts) and torch.equal(u_same, u)
    # The proposal is the box's lower-right quarter: cells 8..15 of the box frame, two per output cell... at S = 8, one each.
    quarter, u_quarter, _ = resample_dense_truth(truth, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([[16.0, 16.0, 32.0, 32.0]]), 8)
    assert torch.equal(quarter[0, :, 0], torch.arange(8, 16) + 1) and torch.allclose(u_quarter[0, 0], torch.arange(8, 16) / d)
    # A proposal reaching beyond the box: cells outside it carry part 0.
    wide, _, _ = resample_dense_truth(truth, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([[-32.0, 0.0, 32.0, 32.0]]), 8)
    assert (wide[0, :, :4] == 0).all() and (wide[0, :, 4:] > 0).all()


def _outputs(parts: torch.Tensor, u: torch.Tensor, v: torch.Tensor, confidence: float) -> dict[str, torch.Tensor]:
    """Chart outputs that predict `parts` with logit margin `confidence` and U, V exactly."""
    fine = torch.nn.functional.one_hot(parts, 25).permute(0, 3, 1, 2).float() * confidence
    n, s = parts.shape[0], parts.shape[-1]
    return {"coarse_segm": torch.zeros(n, 2, s, s), "fine_segm": fine.requires_grad_(),
            "u": u[:, None].expand(n, 25, s, s).clone().requires_grad_(), "v": v[:, None].expand(n, 25, s, s).clone().requires_grad_()}


def test_dense_losses_vanish_for_the_truth_and_weigh_parts_by_the_balance():
    s = 8
    parts = torch.zeros(1, s, s, dtype=torch.long)
    parts[0, :6] = 1  # part 1: 48 pixels
    parts[0, 6:, :2] = 2  # part 2: 4 pixels; the rest is not body
    u = torch.rand(1, s, s)
    v = torch.rand(1, s, s)
    box = [[0.0, 0.0, 16.0, 16.0]]
    targets = _dense_targets(parts, u, v, box, box)
    model = ModelConfig()
    perfect = dense_chart_losses(_outputs(parts, u, v, 30.0), targets, model, LossConfig())
    assert all(value.item() < 1e-6 for value in perfect.values())
    # U off by 0.1 everywhere: smooth L1 0.005 per pixel, any weighting of the pixels -> 0.005 * dense_uv_weight.
    loss = LossConfig(dense_uv_weight=10.0)
    shifted = dense_chart_losses(_outputs(parts, u + 0.1, v, 30.0), targets, model, loss)
    assert shifted["loss_densepose_U"].item() == pytest.approx(0.005 * 10.0, rel=1e-4)
    # Fine segmentation wrong on part 2 only: with balance 1 both parts weigh the same -> half its CE;
    # with balance 0 pixels count -> 4 / 52 of it.
    wrong = parts.clone()
    wrong[parts == 2] = 5
    outputs = _outputs(wrong, u, v, 4.0)
    ce = float(torch.nn.functional.cross_entropy(outputs["fine_segm"].detach()[0, :, 7, 0][None], torch.tensor([2])))
    for balance, share in ((1.0, 0.5), (0.0, 4 / 52)):
        value = dense_chart_losses(outputs, targets, model, LossConfig(dense_part_balance=balance))["loss_densepose_I"].item()
        right = float(torch.nn.functional.cross_entropy(outputs["fine_segm"].detach()[0, :, 0, 0][None], torch.tensor([1])))
        assert value == pytest.approx(share * ce + (1 - share) * right, rel=1e-4)


def test_points_of_dense_rois_are_ignored_and_sparse_rois_keep_their_points():
    s = 8
    parts = torch.ones(2, s, s, dtype=torch.long)
    u = torch.full((2, s, s), 0.5)
    box = [[0.0, 0.0, 16.0, 16.0]] * 2
    targets = _dense_targets(parts.clone(), u, u, box, box)
    # One point per ROI: ROI 0 (dense) says part 7, ROI 1 (no dense truth) says part 1 at U = 0.5.
    targets.point_roi = torch.tensor([0, 1])
    targets.x, targets.y = torch.tensor([128.0, 128.0]), torch.tensor([128.0, 128.0])
    targets.parts, targets.u, targets.v = torch.tensor([7, 1]), torch.tensor([0.9, 0.5]), torch.tensor([0.9, 0.5])
    targets.dense.has_dense = torch.tensor([True, False])
    targets.dense.parts[1] = 0
    losses = densepose_losses(_outputs(parts, u, u, 30.0), targets, ModelConfig(), LossConfig())
    assert losses["loss_densepose_I"].item() < 1e-6 and losses["loss_densepose_U"].item() < 1e-6
    targets.dense.has_dense = torch.tensor([False, False])  # now ROI 0's wrong point counts
    assert densepose_losses(_outputs(parts, u, u, 30.0), targets, ModelConfig(), LossConfig())["loss_densepose_I"].item() > 1.0


def test_the_scikit_image_backgrounds_are_the_listed_people_free_photos(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    paths = bundled_backgrounds("scikit-image")
    assert [p.name for p in paths] == [photo.file_name for photo in SCIKIT_IMAGE_PHOTOS]
    assert not {"astronaut.png", "camera.png"} & {p.name for p in paths}
    assert list_backgrounds("scikit-image") == paths
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scikit-image").mkdir()
    with pytest.raises(DensePoseError, match="both a folder"):
        list_backgrounds("scikit-image")
    with pytest.raises(DensePoseError, match="unknown background set"):
        bundled_backgrounds("imagenet")


def test_a_missing_scikit_image_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(DensePoseError, match=r"densepose-torch\[train\]"):
        bundled_backgrounds("scikit-image")


def test_the_photo_look_is_deterministic_has_empty_scenes_and_leaves_the_plain_look_alone():
    plain = SceneGenerator(96)
    photo = SceneGenerator(96, config=SceneConfig(96, look="photo"))
    a, b = photo.render((3, 1)), photo.render((3, 1))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.I, b.I)
    scenes = [photo.render((3, i)) for i in range(40)]
    empty = [s for s in scenes if s.num_persons == 0]
    assert 1 <= len(empty) <= 12 and all((s.I == 0).all() and (s.instance == 0).all() for s in empty)
    # The photo look draws more from the seed, the plain look nothing: its people are where they were.
    first = plain.render((3, 1))
    assert np.array_equal(first.I, SceneGenerator(96).render((3, 1)).I)
    with pytest.raises(DensePoseError, match="unknown scene look"):
        SceneGenerator(96, config=SceneConfig(96, look="cartoon"))


def test_dense_training_sets_carry_every_body_pixel_and_keep_people_free_images(tmp_path):
    from densepose_torch.synthetic.dataset import SynthJob, write_dataset
    from densepose_torch.training.config import DatasetConfig
    from densepose_torch.training.datasets import training_source

    out = tmp_path / "set"
    write_dataset(SynthJob(out=out, seed=3, size=96, num_points=20, look="photo"), 30, progress=False)
    on_disk = DatasetConfig(annotations=str(out / "annotations.json"), images=str(out / "images"))
    sparse = training_source((on_disk,))
    dense = training_source((dataclasses.replace(on_disk, dense=True, keep_empty=True),))
    assert len(dense) == 30 and len(sparse) < 30  # the people-free scenes stay
    with_points = [p for k in range(len(dense)) for p in dense(k)[1] if p.points is not None]
    assert with_points and all(p.dense is not None and (p.dense.parts > 0).any() for p in with_points)
    assert all(p.dense is None for k in range(len(sparse)) for p in sparse(k)[1])
    # On-the-fly rendering gives the same truth as the set written to disk (up to the stored U, V precision).
    from densepose_torch.data.loader import SyntheticSource

    live = SyntheticSource(96, 3, 30, 20, look="photo", dense=True)
    k = next(k for k in range(30) if any(p.points is not None for p in dense(k)[1]))
    disk_person = next(p for p in dense(k)[1] if p.points is not None)
    live_person = next(p for p in live(k)[1] if p.points is not None)
    assert np.array_equal(disk_person.dense.parts, live_person.dense.parts)
    np.testing.assert_allclose(disk_person.dense.u, live_person.dense.u, atol=1e-4)
    with pytest.raises(DensePoseError, match="dense: true needs"):
        (tmp_path / "plain").mkdir()
        import json
        data = json.loads((out / "annotations.json").read_text())
        data["info"].pop("dense_root")
        (tmp_path / "plain" / "annotations.json").write_text(json.dumps(data))
        training_source((DatasetConfig(annotations=str(tmp_path / "plain" / "annotations.json"), images=str(out / "images"), dense=True),))


def test_person_height_frames_close_ups_the_set_records_it_and_training_renders_it_alike(tmp_path):
    import json

    from densepose_torch.data.loader import SyntheticSource
    from densepose_torch.synthetic.dataset import SynthJob, write_dataset
    from densepose_torch.training.config import train_config_from_dict

    def box_heights(out, person_height):
        write_dataset(SynthJob(out=out, seed=5, size=96, num_points=20, person_height=person_height), 24, progress=False)
        return np.array([a["bbox"][3] for a in json.loads((out / "annotations.json").read_text())["annotations"]])

    framed, close = box_heights(tmp_path / "framed", None), box_heights(tmp_path / "close", (1.5, 2.5))
    # A person at 1.5 to 2.5 image heights is cut by the 96 px frame (what is left of them, after
    # other people and the frame, still mostly spans it); the default framing (0.2 to 1.2) mostly
    # shows whole people well inside it.
    assert np.median(close) > 64 and np.median(close) > 1.8 * np.median(framed), (np.median(close), np.median(framed))
    assert json.loads((tmp_path / "close" / "synth_config.json").read_text())["person_height"] == [1.5, 2.5]
    assert "person_height" not in json.loads((tmp_path / "framed" / "synth_config.json").read_text())  # old sets still resume
    with pytest.raises(DensePoseError, match="person_height"):  # the folder holds another framing
        write_dataset(SynthJob(out=tmp_path / "close", seed=5, size=96, num_points=20), 24, progress=False)
    # A training config names the same framing; rendered on the fly it gives the same people.
    synthetic = {"count": 24, "seed": 5, "size": 96, "num_points": 20, "person_height": [1.5, 2.5]}
    config = train_config_from_dict({"model": {"depth": 18}, "data": {"train": [{"synthetic": synthetic}]}})
    assert config.data.train[0].synthetic.person_height == (1.5, 2.5)
    live = SyntheticSource(96, 5, 24, 20, person_height=(1.5, 2.5))
    on_disk = json.loads((tmp_path / "close" / "annotations.json").read_text())
    first = min(a["image_id"] for a in on_disk["annotations"])
    index = sorted(i["id"] for i in on_disk["images"]).index(first)
    np.testing.assert_allclose(live(index)[1][0].box[3] - live(index)[1][0].box[1],
                               next(a["bbox"][3] for a in on_disk["annotations"] if a["image_id"] == first), atol=1.0)


def test_empty_share_sets_the_people_free_scenes_the_set_records_it_and_training_renders_it_alike(tmp_path):
    import json

    from densepose_torch.data.loader import SyntheticSource
    from densepose_torch.synthetic.dataset import SynthJob, write_dataset
    from densepose_torch.synthetic.scene import SceneGenerator, scene_config
    from densepose_torch.training.config import train_config_from_dict

    def empty_images(out, look, empty_share):
        write_dataset(SynthJob(out=out, seed=9, size=64, num_points=5, look=look, empty_share=empty_share), 40, progress=False)
        data = json.loads((out / "annotations.json").read_text())
        return {i["id"] for i in data["images"]} - {a["image_id"] for a in data["annotations"]}

    # 40 scenes: a share of 0.1 leaves 4 empty on average (P(more than 12) < 1e-4), 0.6 leaves 24
    # (P(fewer than 13) < 1e-3); a plain set given no share has none, one given 1 has nothing but.
    photo, many = empty_images(tmp_path / "photo", "photo", None), empty_images(tmp_path / "many", "photo", 0.6)
    assert len(photo) <= 12 < len(many), (len(photo), len(many))
    assert not empty_images(tmp_path / "plain", "plain", None)
    assert len(empty_images(tmp_path / "all", "plain", 1.0)) == 40
    # The look's own share draws the same scenes as no setting at all: old sets keep their bytes.
    default, explicit = (SceneGenerator(64, config=scene_config(64, "photo", empty_share=share)) for share in (None, 0.1))
    np.testing.assert_array_equal(default.render((9, 3)).image, explicit.render((9, 3)).image)
    assert json.loads((tmp_path / "many" / "synth_config.json").read_text())["empty_share"] == 0.6
    assert "empty_share" not in json.loads((tmp_path / "photo" / "synth_config.json").read_text())
    with pytest.raises(DensePoseError, match="empty_share"):  # the folder holds another share
        write_dataset(SynthJob(out=tmp_path / "many", seed=9, size=64, num_points=5, look="photo"), 40, progress=False)
    synthetic = {"count": 40, "seed": 9, "size": 64, "num_points": 5, "look": "photo", "empty_share": 0.6}
    config = train_config_from_dict({"model": {"depth": 18}, "data": {"train": [{"synthetic": synthetic}]}})
    assert config.data.train[0].synthetic.empty_share == 0.6
    live = SyntheticSource(64, 9, 40, 5, look="photo", empty_share=0.6)
    on_disk = json.loads((tmp_path / "many" / "annotations.json").read_text())
    ids = sorted(i["id"] for i in on_disk["images"])
    assert {ids[index] for index in range(40) if not live(index)[1]} == many


@pytest.mark.parametrize("setting, bad, message", [
    ("person_height", (0.0, 1.0), "person height"),
    ("person_height", (2.0, 1.0), "person height"),
    ("empty_share", -0.1, "share of empty scenes"),
    ("empty_share", 1.5, "share of empty scenes"),
])
def test_bad_scene_settings_are_refused_where_they_are_made(tmp_path, setting, bad, message):
    from densepose_torch.synthetic.dataset import SynthJob, write_dataset
    from densepose_torch.synthetic.scene import scene_config
    from densepose_torch.training.config import train_config_from_dict

    with pytest.raises(DensePoseError, match=message):
        scene_config(64, **{setting: bad})
    # Before a set's folder is written, and when a training config is read rather than in a
    # loader worker.
    with pytest.raises(DensePoseError, match=message):
        write_dataset(SynthJob(out=tmp_path / "bad", seed=5, size=64, **{setting: bad}), 2, progress=False)
    assert not (tmp_path / "bad").exists()
    synthetic = {"count": 2, "seed": 5, "size": 64, setting: list(bad) if isinstance(bad, tuple) else bad}
    with pytest.raises(DensePoseError, match=message):
        train_config_from_dict({"model": {"depth": 18}, "data": {"train": [{"synthetic": synthetic}]}})
