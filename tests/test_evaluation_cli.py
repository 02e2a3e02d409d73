"""`densepose evaluate` end to end, in a temporary folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from densepose_torch.cli import main
from densepose_torch.io.coco_results import load_results, write_results
from densepose_torch.results import ChartResult, DensePoseResult

from .test_evaluation import Scene
from .test_evaluation_official_data import write_fake_official_data


def run_cli(*argv) -> int:
    """`densepose evaluate ...` as the console script runs it (errors become a message and an exit code)."""
    return main(["evaluate", *[str(a) for a in argv]])


def perfect_scene() -> Scene:
    """Two images, three persons, each detected perfectly: GT points and predictions carry the
    same quantised (I, U, V), so they land on the same vertex of any surface (GPS 1)."""
    scene = Scene()
    for image_id, boxes in ((1, [(10, 20, 40, 60), (200, 30, 150, 220)]), (2, [(50, 50, 120, 100)])):
        scene.image(image_id)
        for index, box in enumerate(boxes):
            ann, chart = scene.person(image_id, box)
            scene.detect(image_id, box, chart, score=0.9 - 0.1 * index)
    return scene


def write_inputs(tmp_path, scene: Scene):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(scene.ground_truth()))
    pred_path = tmp_path / "results.json"
    write_results(pred_path, scene.detections)
    return gt_path, pred_path


def test_evaluate_results_file_with_official_surface(tmp_path, capsys):
    scene = perfect_scene()
    gt_path, pred_path = write_inputs(tmp_path, scene)
    data = write_fake_official_data(tmp_path / "dp_data")
    out = tmp_path / "metrics" / "m.json"
    assert run_cli("--gt", gt_path, "--pred", pred_path, "--surface", f"official:{data}", "-o", out) == 0
    printed = capsys.readouterr().out
    assert "GPSm" in printed and "IOU" in printed and "box" in printed and "3 persons" in printed
    metrics = json.loads(out.read_text())
    for mode in ("gps", "gpsm", "iou"):
        assert metrics[mode]["AP"] == pytest.approx(100.0, abs=1e-9) and metrics[mode]["AR"] == pytest.approx(100.0, abs=1e-9)
    assert metrics["bbox"]["AP"] == pytest.approx(100.0, abs=1e-9)


def test_apex_and_surface_none(tmp_path, capsys):
    scene = perfect_scene()
    scene.detections[0]["labels_uv"] = scene.detections[0]["labels_uv"] * 0  # a miss of person 1
    gt_path, pred_path = write_inputs(tmp_path, scene)
    out = tmp_path / "m.json"
    assert run_cli("--gt", gt_path, "--pred", pred_path, "--surface", "none", "--min-iou", "0.2", "-o", out) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"iou", "bbox", "settings", "counts"}
    assert metrics["settings"]["thresholds"][0] == 0.2 and len(metrics["settings"]["thresholds"]) == 16
    assert {"AP20", "AP30", "AP40"} <= set(metrics["iou"])
    # Two of three persons found at every threshold; the empty detection scores highest in
    # image 1 and is a false positive: AP = mean of the 101-point envelope, worked out below.
    # Recall steps 1/3 (precision 1/2) then 2/3 (precision 2/3): thresholds 0..0.66 -> 2/3.
    assert metrics["iou"]["AR"] == pytest.approx(200 / 3, abs=1e-9)
    assert metrics["iou"]["AP"] == pytest.approx(67 * (2 / 3) / 101 * 100, abs=1e-9)
    assert "GPS and GPSm not computed" in capsys.readouterr().out


def test_results_folder_of_per_image_files(tmp_path):
    scene = perfect_scene()
    gt_path, _ = write_inputs(tmp_path, scene)
    folder = tmp_path / "json"
    for image_id in (1, 2):
        write_results(folder / f"{image_id:06d}.json", [d for d in scene.detections if d["image_id"] == image_id])
    out = tmp_path / "m.json"
    assert run_cli("--gt", gt_path, "--pred", folder, "--surface", "none", "-o", out) == 0
    assert json.loads(out.read_text())["iou"]["AP"] == pytest.approx(100.0, abs=1e-9)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    scene = perfect_scene()
    gt_path, pred_path = write_inputs(tmp_path, scene)
    (tmp_path / "broken.json").write_text("{not json")
    stray = dict(scene.detections[0], image_id=42)
    write_results(tmp_path / "stray.json", [stray])
    cases = [
        ("--gt", tmp_path / "missing.json", "--pred", pred_path, "--surface", "none"),
        ("--gt", tmp_path / "broken.json", "--pred", pred_path, "--surface", "none"),
        ("--gt", gt_path, "--pred", tmp_path / "broken.json", "--surface", "none"),
        ("--gt", gt_path, "--pred", tmp_path / "stray.json", "--surface", "none"),
        ("--gt", gt_path, "--pred", pred_path, "--surface", f"official:{tmp_path / 'nowhere'}"),
        ("--gt", gt_path, "--pred", pred_path, "--surface", "smpl"),
        ("--gt", gt_path, "--model", "R_50_FPN_s1x", "--surface", "none"),  # no --images
    ]
    for argv in cases:
        capsys.readouterr()
        assert run_cli(*argv) != 0, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("densepose: error:") and "\n" not in err, (argv, err)


class FakePredictor:
    """Returns the scene's perfect result for an image; can fail on a chosen call."""

    def __init__(self, scene: Scene, fail_on_call: int | None = None):
        self.scene, self.fail_on_call, self.calls = scene, fail_on_call, []

    def __call__(self, path):
        self.calls.append(path.name)
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt
        image_id = next(image["id"] for image in self.scene.images if image["file_name"] == path.name)
        dets = [d for d in self.scene.detections if d["image_id"] == image_id]
        charts, boxes = [], []
        for det in dets:
            x, y, w, h = det["bbox"]
            chart = det["labels_uv"]
            # Float UV that quantises back to the chart: (q + 0.5) / 255 truncates to q.
            charts.append(ChartResult(int(x), int(y), chart[0].copy(), ((chart[1:] + 0.5) / 255).astype(np.float32)))
            boxes.append([x, y, x + w, y + h])
        return DensePoseResult((400, 600), np.array(boxes, np.float32), np.array([d["score"] for d in dets], np.float32), charts)


def test_predict_then_evaluate_resumes_after_interruption(tmp_path, monkeypatch):
    scene = perfect_scene()
    gt_path, _ = write_inputs(tmp_path, scene)
    images = tmp_path / "images"
    images.mkdir()
    for image in scene.images:
        Image.new("RGB", (600, 400)).save(images / image["file_name"])
    from densepose_torch.jobs import predict as predict_job

    first = FakePredictor(scene, fail_on_call=2)
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: first)
    preds = tmp_path / "preds.json"
    argv = ("--gt", gt_path, "--model", "fake", "--images", images, "--pred-out", preds, "--surface", "none", "-o", tmp_path / "m.json")
    assert run_cli(*argv) == 130  # Ctrl-C: the exit code of SIGINT, no traceback
    assert not preds.exists() and (tmp_path / "preds.json.partial.jsonl").is_file()

    second = FakePredictor(scene)
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: second)
    assert run_cli(*argv) == 0
    assert second.calls == ["000002.jpg"]  # image 1 was finished before the interruption
    assert not (tmp_path / "preds.json.partial.jsonl").exists()
    assert len(load_results(preds)) == 3
    assert json.loads((tmp_path / "m.json").read_text())["iou"]["AP"] == pytest.approx(100.0, abs=1e-9)
    # A finished predictions file is reused as is.
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: pytest.fail("should not predict again"))
    assert run_cli(*argv) == 0


def test_predict_with_a_real_tiny_model(tmp_path):
    import torch

    from densepose_torch.checkpoint import save_checkpoint
    from densepose_torch.config import ModelConfig
    from densepose_torch.modeling import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64,
                                    min_size_test=128, max_size_test=160, detections_per_image=3))
    checkpoint = save_checkpoint(model, tmp_path / "tiny.pth")
    scene = Scene()
    scene.image(1, height=96, width=128)
    scene.person(1, (10, 10, 50, 70))
    gt_path, _ = write_inputs(tmp_path, scene)
    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)).save(tmp_path / "images" / "000001.jpg")
    out = tmp_path / "m.json"
    assert run_cli("--gt", gt_path, "--model", checkpoint, "--images", tmp_path / "images", "--device", "cpu",
                   "--pred-out", tmp_path / "preds.json", "--surface", "none", "-o", out) == 0
    metrics = json.loads(out.read_text())
    records = load_results(tmp_path / "preds.json")
    assert metrics["counts"]["detections"] == len(records) >= 1  # random weights still detect something
    assert all(record["image_id"] == 1 and record["file_name"] == "000001.jpg" for record in records)
    assert 0.0 <= metrics["iou"]["AP"] <= 100.0


def test_synthetic_surface(tmp_path):
    pytest.importorskip("densepose_torch.synthetic.surface")
    scene = perfect_scene()
    # Mirror U of the first detection: its GPS drops below 1, the others stay perfect.
    scene.detections[0]["labels_uv"] = scene.detections[0]["labels_uv"].copy()
    scene.detections[0]["labels_uv"][1] = 255 - scene.detections[0]["labels_uv"][1]
    gt_path, pred_path = write_inputs(tmp_path, scene)
    out = tmp_path / "m.json"
    assert run_cli("--gt", gt_path, "--pred", pred_path, "--surface", "synthetic", "-o", out) == 0
    gps = json.loads(out.read_text())["gps"]
    assert gps["AR"] < 100.0 and gps["AR50"] >= 200 / 3  # the two untouched persons at least
