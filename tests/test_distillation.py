"""Distillation: the teacher's person crops, its training (resumable to the bit), the dense
labels it writes (inside the mask, after the sparse points, resumable), the student trained on
them by `densepose train`, and the teacher evaluated as a fully convolutional model (on person
crops, or on whole images: the ablation's first row)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from densepose_torch import ModelConfig, load_model
from densepose_torch.chart_symmetry import FlipSymmetry
from densepose_torch.checkpoint import save_checkpoint
from densepose_torch.cli import main
from densepose_torch.data.densepose_coco import decode_coarse_segmentation
from densepose_torch.errors import DensePoseError
from densepose_torch.modeling import build_model
from densepose_torch.training import teacher as teacher_module
from densepose_torch.training.config import (
    LossConfig,
    TeacherConfig,
    train_config_from_dict,
)
from densepose_torch.training.dense_labels import grid_labels, write_dense_labels
from densepose_torch.training.losses import densepose_losses
from densepose_torch.training.teacher import (
    CHARTS,
    TeacherNet,
    TeacherPredictor,
    crop_person,
    image_densepose,
    load_teacher,
    teacher_batch,
    teacher_examples,
    teacher_outputs,
    train_teacher,
)
from densepose_torch.training.trainer import read_metrics, train

from .test_training import TINY_MODEL, TWO_STEPS, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_TEACHER = {"depth": 18, "base_channels": 16, "fpn_channels": 32, "head_channels": 32, "head_convs": 2, "crop_size": 64,
                "crops_per_batch": 4, "max_iter": 4, "checkpoint_period": 2}


def _config(dataset: Path, output: Path, teacher: dict = TINY_TEACHER, **top) -> dict:
    distillation = {"output": str(output / "teacher"), "teacher": dict(teacher), "label_grid": 16}
    return tiny_config(dataset, output / "student", **{"solver": dict(TWO_STEPS), "checkpoint_period": 1, "distillation": distillation, **top})


def test_crops_sample_the_box_frame_at_pixel_centres():
    image = np.tile(np.arange(100, dtype=np.float32), (80, 1))[:, :, None].repeat(3, axis=2)  # value = column
    crop = crop_person(image, np.array([10.0, 20.0, 50.0, 60.0]), 8)
    assert crop.shape == (8, 8, 3)
    # Output column j samples x = 10 + (j + 0.5) * 5 in continuous coordinates, i.e. the value
    # (pixel index) x - 0.5. OpenCV quantises sample positions to 1/32 pixel: tolerance 1/32.
    expected = 10 + (np.arange(8) + 0.5) * 5 - 0.5
    np.testing.assert_allclose(crop[3, :, 0], expected, atol=1 / 32)


def test_config_section_checks_and_defaults(tmp_path):
    config = train_config_from_dict(_config(tmp_path, tmp_path))
    assert config.distillation.teacher == TeacherConfig(**TINY_TEACHER) and config.distillation.label_grid == 16
    assert not config.distillation.teacher.segmentation  # the paper's teacher sees the sparse points only
    with pytest.raises(DensePoseError, match="crop_size must be a multiple of 32"):
        train_config_from_dict(_config(tmp_path, tmp_path, dict(TINY_TEACHER, crop_size=50)))
    with pytest.raises(DensePoseError, match="unknown key distillation.teacher.crop"):
        train_config_from_dict(_config(tmp_path, tmp_path, dict(TINY_TEACHER, crop=50)))


def test_teacher_batches_hold_only_points_unless_segmentation_and_it_fits_them(tiny_synthetic_set, tmp_path):
    config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path))
    examples = teacher_examples(config)
    teacher_config = config.distillation.teacher
    crops, targets = teacher_batch(examples, teacher_config, FlipSymmetry(), 0, 0)
    assert crops.shape == (4, 3, 64, 64) and targets.coarse_segm is None
    assert (targets.parts > 0).all() and len(targets.x) == len(targets.point_roi) > 100
    again, _ = teacher_batch(examples, teacher_config, FlipSymmetry(), 0, 0)
    assert torch.equal(crops, again)  # a function of (seed, iteration): resumable
    _, with_masks = teacher_batch(examples, TeacherConfig(**dict(TINY_TEACHER, segmentation=True)), FlipSymmetry(), 0, 0)
    assert with_masks.coarse_segm.shape == (4, 256, 256)

    torch.manual_seed(0)
    model = TeacherNet(teacher_config)
    teacher_module.initialize_teacher(model)
    teacher_module.prepare_backbone(model, "bn", 0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    totals = []
    for _ in range(12):
        losses = densepose_losses(model(crops), targets, CHARTS, LossConfig())
        assert losses["loss_densepose_S"].item() == 0.0
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert np.mean(totals[-3:]) < 0.7 * totals[0], totals


def test_whole_image_targets_put_every_person_in_the_image_frame(tiny_synthetic_set, tmp_path):
    config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path, dict(TINY_TEACHER, whole_image=True, segmentation=True)))
    examples = teacher_examples(config)
    assert len(examples) == 6 and all(e.box.tolist() == [0, 0, 96, 96] for e in examples)
    example = max(examples, key=lambda e: len(e.people))
    assert len(example.people) > 1
    merged = image_densepose(example, False, FlipSymmetry())
    # Each person's points, from its box frame to image pixels, then to the image's 256 frame.
    x, y = [], []
    for person in example.people:
        x0, y0, x1, y1 = person.box
        x.append((x0 + person.points.x * (x1 - x0) / 256) * 256 / 96)
        y.append((y0 + person.points.y * (y1 - y0) / 256) * 256 / 96)
    np.testing.assert_allclose(merged.x, np.concatenate(x), atol=1e-3)  # float32 rounding of 0..256 values
    np.testing.assert_allclose(merged.y, np.concatenate(y), atol=1e-3)
    assert len(merged.parts) == sum(len(p.points.x) for p in example.people)
    # The painted coarse map is the union of the people's masks: their points fall on it as often
    # as on their own masks (a point on a mask's edge may round to the next cell: 2 % slack).
    own = np.concatenate([decode_coarse_segmentation(p.masks)[p.points.y.astype(int), p.points.x.astype(int)] > 0 for p in example.people])
    painted = merged.coarse_segm[merged.y.astype(int).clip(0, 255), merged.x.astype(int).clip(0, 255)] > 0
    assert painted.mean() >= own.mean() - 0.02 and painted.mean() > 0.9
    assert 0.02 < (merged.coarse_segm > 0).mean() < 0.9
    flipped = image_densepose(example, True, FlipSymmetry())
    np.testing.assert_allclose(flipped.x, 256 - merged.x, atol=1e-3)
    np.testing.assert_array_equal(flipped.y, merged.y)
    np.testing.assert_array_equal(flipped.parts, FlipSymmetry().flip_points(merged.parts, merged.u, merged.v)[0])  # left <-> right
    mirrored = merged.coarse_segm[:, ::-1] > 0
    assert ((flipped.coarse_segm > 0) == mirrored).mean() > 0.99  # nearest-neighbour placement may move an edge by a cell

    crops, targets = teacher_batch(examples, config.distillation.teacher, FlipSymmetry(), 0, 0)
    assert crops.shape == (4, 3, 64, 64) and targets.coarse_segm.shape == (4, 256, 256)
    assert targets.est_boxes.tolist() == [[0, 0, 64, 64]] * 4


def test_whole_image_teacher_cuts_each_box_from_one_pass_over_the_image():
    teacher = TeacherNet(TeacherConfig(**dict(TINY_TEACHER, whole_image=True, segmentation=True))).eval()
    seen = []

    def ramps(crops):  # channel 0: the crop's x coordinate, channel 1: its y coordinate (pixel centres)
        seen.append(crops.shape)
        side = crops.shape[-1]
        centres = torch.arange(side, dtype=torch.float32) + 0.5
        return {"u": torch.stack([centres.expand(side, side), centres[:, None].expand(side, side)])[None]}

    teacher.forward = ramps
    image = np.zeros((80, 160, 3), np.uint8)  # not square: x and y scale differently into the 64 x 64 input
    boxes = np.array([[20.0, 10.0, 100.0, 50.0], [0.0, 0.0, 160.0, 80.0]])
    out = teacher_outputs(teacher, image, boxes)["u"]
    assert seen == [(1, 3, 64, 64)] and out.shape == (2, 2, 56, 56)
    # A linear ramp survives bilinear RoIAlign: bin j of box 0 holds the input x of its centre.
    centres = (torch.arange(56) + 0.5) / 56
    np.testing.assert_allclose(out[0, 0, 5], (20 + centres * 80) * 64 / 160, atol=1e-4)
    np.testing.assert_allclose(out[0, 1, :, 5], (10 + centres * 40) * 64 / 80, atol=1e-4)


class _Interrupt(Exception):
    pass


def _whole_and_interrupted_teacher_runs(tiny_synthetic_set, tmp_path, monkeypatch):
    """(final weights of an uninterrupted run, the config of a run killed before iteration 3)."""
    whole = train_teacher(train_config_from_dict(_config(tiny_synthetic_set, tmp_path / "whole")), progress=False)
    real = teacher_module.teacher_batch

    def stop_at_3(examples, config, symmetry, seed, iteration, device):
        if iteration == 3:
            raise _Interrupt
        return real(examples, config, symmetry, seed, iteration, device)

    cut_config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path / "cut"))
    monkeypatch.setattr(teacher_module, "teacher_batch", stop_at_3)
    with pytest.raises(_Interrupt):
        train_teacher(cut_config, progress=False)
    monkeypatch.setattr(teacher_module, "teacher_batch", real)
    return whole, cut_config


def test_teacher_training_resumes_bit_identically(tiny_synthetic_set, tmp_path, monkeypatch):
    whole, cut_config = _whole_and_interrupted_teacher_runs(tiny_synthetic_set, tmp_path, monkeypatch)
    assert not (tmp_path / "cut" / "teacher" / "teacher_final.pth").exists()
    resumed = train_teacher(cut_config, progress=False)
    a, b = torch.load(whole, weights_only=False)["model"], torch.load(resumed, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(load_teacher(resumed), TeacherNet)
    with pytest.raises(DensePoseError, match="not a teacher checkpoint"):
        load_teacher(save_checkpoint(build_model(ModelConfig(**TINY_MODEL)), tmp_path / "rcnn.pth"))


def test_teacher_resumes_where_it_stopped_also_from_a_checkpoint_of_the_old_format(tiny_synthetic_set, tmp_path, monkeypatch):
    whole, cut_config = _whole_and_interrupted_teacher_runs(tiny_synthetic_set, tmp_path, monkeypatch)
    real = teacher_module.teacher_batch
    seen = []
    folder = tmp_path / "cut" / "teacher"
    assert (folder / "last_teacher_checkpoint").read_text().strip() == "teacher_0000002.pth"
    # Teacher checkpoints written before the shared loop held the CPU RNG state as a bare tensor
    # and no loss scale.
    checkpoint = torch.load(folder / "teacher_0000002.pth", weights_only=False)
    checkpoint["rng"] = checkpoint["rng"]["torch"]
    del checkpoint["scaler"]
    torch.save(checkpoint, folder / "teacher_0000002.pth")

    def record(examples, config, symmetry, seed, iteration, device):
        seen.append(iteration)
        return real(examples, config, symmetry, seed, iteration, device)

    monkeypatch.setattr(teacher_module, "teacher_batch", record)
    resumed = train_teacher(cut_config, progress=False)
    assert seen == [2, 3]  # from the checkpoint on, nothing redone
    a, b = torch.load(whole, weights_only=False)["model"], torch.load(resumed, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_teacher(resumed, "cpu").device == torch.device("cpu")


def _untrained_teacher_file(path: Path) -> Path:
    teacher_module._save(path, TeacherNet(TeacherConfig(**TINY_TEACHER)))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_teacher_training_honours_the_configured_device(tiny_synthetic_set, tmp_path):
    config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path, device="cuda"))
    with pytest.raises(DensePoseError, match="CUDA was requested"):
        train_teacher(config, progress=False)
    assert not (tmp_path / "teacher").exists()
    with pytest.raises(DensePoseError, match="CUDA was requested"):
        load_teacher(_untrained_teacher_file(tmp_path / "untrained.pth"), "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_teacher_trains_on_the_gpu_when_configured(tiny_synthetic_set, tmp_path):
    config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path, dict(TINY_TEACHER, max_iter=3), device="cuda"))
    final = train_teacher(config, progress=False)
    checkpoint = torch.load(tmp_path / "teacher" / "teacher_0000002.pth", weights_only=False)
    assert "cuda" in checkpoint["rng"]  # the GPU's generators were in use, and are saved for resuming
    assert load_teacher(final, "cuda").device.type == "cuda"


def test_grid_labels_take_the_best_body_part_inside_the_mask():
    size = 8
    fine = torch.zeros(1, 25, size, size)
    fine[0, 0] = 100.0  # background would win everywhere: the mask decides where the body is
    fine[0, 3, :, :4] = 5.0
    fine[0, 7, :, 4:] = 5.0
    u = torch.zeros(1, 25, size, size)
    v = torch.zeros(1, 25, size, size)
    u[0, 3], v[0, 3] = 0.25, 0.5
    u[0, 7], v[0, 7] = 1.5, -0.5  # out of range: clipped
    mask = np.zeros((256, 256), bool)
    mask[64:192, 32:224] = True
    labels = grid_labels({"fine_segm": fine, "u": u, "v": v}, 0, mask, 4)
    # Lattice centres 32, 96, 160, 224: rows 96 and 160 fall in the mask's rows [64, 192),
    # columns 32, 96 and 160 in its columns [32, 224).
    assert labels["dp_x"] == [32.0, 96.0, 160.0, 32.0, 96.0, 160.0]
    assert labels["dp_y"] == [96.0, 96.0, 96.0, 160.0, 160.0, 160.0]
    assert labels["dp_I"] == [3, 3, 7, 3, 3, 7]  # crop column = x * 8 / 256: 1, 3 -> part 3; 5 -> part 7
    assert labels["dp_U"] == [0.25, 0.25, 1.0, 0.25, 0.25, 1.0]
    assert labels["dp_V"] == [0.5, 0.5, 0.0, 0.5, 0.5, 0.0]


def test_dense_labels_append_teacher_points_inside_the_mask_and_resume(tiny_synthetic_set, tmp_path):
    torch.manual_seed(0)
    teacher = TeacherNet(TeacherConfig(**TINY_TEACHER)).eval()
    out = tmp_path / "labels"
    final = write_dense_labels(teacher, tiny_synthetic_set / "annotations.json", tiny_synthetic_set / "images", out, 16, progress=False)
    source = json.loads((tiny_synthetic_set / "annotations.json").read_text())
    labelled = json.loads(final.read_text())
    assert labelled["info"]["dense_labels"]["grid"] == 16
    grown = 0
    for before, after in zip(source["annotations"], labelled["annotations"]):
        if "dp_x" not in before:
            assert "dp_x" not in after
            continue
        n = len(before["dp_x"])
        for key in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V"):
            assert after[key][:n] == before[key]  # the sparse annotations come first, unchanged
        extra_x, extra_y = np.array(after["dp_x"][n:]), np.array(after["dp_y"][n:])
        mask = decode_coarse_segmentation(before["dp_masks"]) > 0
        assert mask[extra_y.astype(int), extra_x.astype(int)].all()
        assert len(extra_x) == mask[8::16, 8::16].sum()  # every lattice centre inside the mask
        assert set(after["dp_I"][n:]) <= set(range(1, 25))
        grown += len(extra_x)
    assert grown > 0

    parts = sorted((out / "labels").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in parts[1:]}
    parts[0].unlink()
    final.unlink()
    again = write_dense_labels(teacher, tiny_synthetic_set / "annotations.json", tiny_synthetic_set / "images", out, 16, progress=False)
    assert json.loads(again.read_text()) == labelled
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())  # finished images were not redone
    with pytest.raises(DensePoseError, match="another teacher"):
        write_dense_labels(teacher, tiny_synthetic_set / "annotations.json", tiny_synthetic_set / "images", out, 8, progress=False)
    other = TeacherNet(TeacherConfig(**TINY_TEACHER)).eval()
    with pytest.raises(DensePoseError, match="another teacher"):
        write_dense_labels(other, tiny_synthetic_set / "annotations.json", tiny_synthetic_set / "images", out, 16, progress=False)


def test_densepose_train_runs_teacher_labels_and_student_and_evaluates_the_teacher(tiny_synthetic_set, tmp_path, monkeypatch):
    from densepose_torch.training import trainer

    read = []
    real_source = trainer.training_source
    monkeypatch.setattr(trainer, "training_source", lambda sets: read.append(sets) or real_source(sets))
    config = train_config_from_dict(_config(tiny_synthetic_set, tmp_path))
    final = train(config, progress=False)
    teacher_dir = tmp_path / "teacher"
    assert [d.annotations for d in read[0]] == [str(teacher_dir / "labels_0" / "annotations.json")]  # the student's data
    assert (teacher_dir / "teacher_final.pth").is_file() and (teacher_dir / "labels_0" / "annotations.json").is_file()
    assert load_model(final).config.base_channels == 16
    assert [e["iteration"] for e in read_metrics(tmp_path / "student" / "metrics.jsonl") if "losses" in e] == [1, 2]

    # The teacher as a fully convolutional model, on the boxes of a detector that keeps everything.
    torch.manual_seed(0)
    detector = build_model(ModelConfig(**dict(TINY_MODEL, score_threshold_test=0.0, detections_per_image=3)))
    predictor = TeacherPredictor(load_teacher(teacher_dir / "teacher_final.pth"), detector)
    result = predictor(tiny_synthetic_set / "images" / "000000.jpg")
    assert len(result) == 3
    from densepose_torch.postprocessing import integer_boxes

    for (x, y, w, h), chart in zip(integer_boxes(torch.from_numpy(result.boxes)).tolist(), result.charts):
        assert (chart.x, chart.y) == (x, y) and chart.labels.shape == (h, w)
    detector_path = save_checkpoint(detector, tmp_path / "detector.pth")
    config_path = tmp_path / "fcn.yaml"
    import yaml

    raw = _config(tiny_synthetic_set, tmp_path / "fcn", dict(TINY_TEACHER, segmentation=True, max_iter=2))
    config_path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config_path), "--eval-only", "--teacher", "--model", str(detector_path)]) == 0
    evaluation = json.loads((tmp_path / "fcn" / "student" / "evaluation.json").read_text())
    assert evaluation["summary"]["images"] == 6 and evaluation["model"].endswith("teacher_final.pth")
    assert main(["train", str(config_path), "--teacher"]) != 0  # --teacher without --eval-only: a one-line error
