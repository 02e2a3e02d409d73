"""`densepose compare` with real (tiny, randomly initialised) models, and with ground truth: a
small synthetic dataset, whose metrics in the report must equal the evaluator's."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from densepose_torch import ModelConfig, save_checkpoint
from densepose_torch.cli import main
from densepose_torch.compare import CompareConfig, compare, resolve_models
from densepose_torch.compare.models import load_predictor
from densepose_torch.evaluation import evaluate
from densepose_torch.io.coco_results import result_to_records
from densepose_torch.io.images import read_image
from densepose_torch.io.npz import read_npz
from densepose_torch.modeling import build_model
from densepose_torch.results import ChartResult, DensePoseResult
from densepose_torch.synthetic import SynthJob, load_surface, read_dense, write_dataset

from .test_compare import check_consistent

# The common tiny test architecture, at most 5 detections so that the DensePose head stays cheap.
TINY = ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64,
                   min_size_test=64, max_size_test=96, detections_per_image=5)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models spend their time in thread start-ups and barriers, not arithmetic: one thread
    is faster, and leaves the second core to whoever shares the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two tiny checkpoints with different random weights (seeds 0 and 1)."""
    folder = tmp_path_factory.mktemp("tiny_models")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(build_model(TINY, f"tiny{seed}"), folder / f"tiny{seed}.pth"))
    return paths


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Three 128-pixel synthetic images with DensePose-COCO ground truth and dense maps."""
    out = tmp_path_factory.mktemp("synth")
    write_dataset(SynthJob(out, seed=0, size=128), 3, workers=1, progress=False)
    return out


def run_cli(*argv) -> int:
    """`densepose compare ...` as the console script runs it (errors become a message and an exit code)."""
    return main(["compare", *[str(a) for a in argv]])


def test_tiny_models_end_to_end(tiny_models, synthetic, tmp_path):
    report = tmp_path / "report"
    argv = ["--models", f"{tiny_models[0]},{tiny_models[1]}", "--images", synthetic / "images", "-o", report,
            "--device", "cpu", "--min-score", "0", "--batch-size", "2", "--render", "segm", "--limit", "2"]
    assert run_cli(*argv) == 0
    results = check_consistent(report)
    assert [row["model"] for row in results["models"]] == ["tiny0", "tiny1"]
    miou = results["agreement"]["miou"]
    assert miou[0][0] == miou[1][1] == 1.0
    assert miou[0][1] is not None and 0.0 <= miou[0][1] < 1.0  # different weights, different part maps
    for row in results["models"]:
        assert row["images_per_s"] > 0 and row["latency_p95_ms"] >= row["latency_median_ms"] > 0
        assert 0 < row["detections_per_image"] <= TINY.detections_per_image
    # The pictures are the segm preset of the cached results, one per (model, image).
    assert results["images"] == ["000000.jpg", "000001.jpg"]
    assert len(list((report / "thumbnails").rglob("*.jpg"))) == 2 * 3  # the photo and each model's picture
    # The cached results are what the model returns: a fresh predictor agrees exactly.
    image = synthetic / "images" / "000001.jpg"
    cached = read_npz(report / results["cache"]["tiny1"] / "000001.jpg.npz")
    fresh = load_predictor(resolve_models([str(tiny_models[1])])[0], tiny_models[1], "cpu", "fp32")(image)
    np.testing.assert_array_equal(cached.boxes, fresh.boxes)
    np.testing.assert_array_equal(cached.to_dense().I, fresh.to_dense().I)


def oracle_result(dense_path) -> DensePoseResult:
    """The ground truth's own dense maps as a prediction: one chart per person."""
    maps = read_dense(dense_path)
    boxes, charts = [], []
    for instance in range(1, int(maps.instance.max()) + 1):
        ys, xs = np.nonzero(maps.instance == instance)
        if ys.size == 0:
            continue
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        mine = maps.instance[y0:y1, x0:x1] == instance
        labels = np.where(mine, maps.I[y0:y1, x0:x1], 0).astype(np.uint8)
        uv = np.stack([np.where(mine, maps.U[y0:y1, x0:x1], 0), np.where(mine, maps.V[y0:y1, x0:x1], 0)]).astype(np.float32)
        boxes.append([x0, y0, x1, y1])
        charts.append(ChartResult(x0, y0, labels, uv))
    scores = np.linspace(0.99, 0.9, len(boxes), dtype=np.float32)
    return DensePoseResult(maps.I.shape, np.array(boxes, np.float32).reshape(-1, 4), scores, charts)


class OraclePredictor:
    """Knows each synthetic image by its pixels and answers with its ground truth (only every
    `keep_every`-th person of it)."""

    def __init__(self, synthetic, keep_every: int = 1):
        self.answers = {}
        for image in sorted((synthetic / "images").glob("*.jpg")):
            result = oracle_result(synthetic / "dense" / f"{image.stem}.npz")
            self.answers[hashlib.sha1(read_image(image).tobytes()).hexdigest()] = result.select(np.arange(0, len(result), keep_every))

    def batch(self, images, min_score=None):
        assert min_score is None, "with ground truth, AP needs every detection"
        return [self.answers[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()] for image in images]


def test_ground_truth_metrics_equal_the_evaluator(synthetic, tmp_path):
    """An oracle (the ground truth itself) and a copy of it that misses every second person: the
    report's figures are the evaluator's, and they differ between the two."""
    oracle_file, half_file = tmp_path / "oracle.pth", tmp_path / "half.pth"
    oracle_file.write_bytes(b"")
    half_file.write_bytes(b"")

    def loader(spec, weights, device, precision):
        return OraclePredictor(synthetic, keep_every=1 if spec.name == "oracle" else 2)

    report = tmp_path / "report"
    settings = CompareConfig(models=(str(oracle_file), str(half_file)), images=synthetic / "images", output=report,
                             ground_truth=synthetic / "annotations.json", surface="synthetic", device="cpu", min_score=0.0)
    compare(settings, loader=loader, progress=False)
    results = check_consistent(report)
    gt = json.loads((synthetic / "annotations.json").read_text())
    surface = load_surface()
    for row in results["models"]:
        records = []
        for image in gt["images"]:
            result = read_npz(report / results["cache"][row["model"]] / f"{image['file_name']}.npz")
            records += result_to_records(result, image["id"], file_name=image["file_name"])
        expected = evaluate(synthetic / "annotations.json", records, surface)
        # The report rounds to 2 decimals; results.json keeps the evaluator's figures unrounded.
        assert results["evaluation"][row["model"]] == json.loads(json.dumps(expected))
        for key, mode in (("gps_ap", "gps"), ("gpsm_ap", "gpsm"), ("iou_ap", "iou"), ("box_ap", "bbox")):
            assert row[key] == round(expected[mode]["AP"], 2)
    oracle, half = results["models"]
    assert oracle["box_ap"] > 90 and oracle["gps_ap"] > 50  # the figures are not trivially zero
    assert half["box_ap"] < oracle["box_ap"] and half["gps_ap"] < oracle["gps_ap"]
    assert "GPSm AP on the ground truth" in (report / "index.html").read_text()


def test_ground_truth_with_limit_evaluates_only_those_images(synthetic, tmp_path):
    oracle_file = tmp_path / "oracle.pth"
    oracle_file.write_bytes(b"")
    report = tmp_path / "report"
    compare(CompareConfig(models=(str(oracle_file),), images=synthetic / "images", output=report, limit=2,
                          ground_truth=synthetic / "annotations.json", surface="none", device="cpu", min_score=0.0),
            loader=lambda *args: OraclePredictor(synthetic), progress=False)
    results = check_consistent(report)
    assert results["images"] == ["000000.jpg", "000001.jpg"]
    assert results["evaluation"]["oracle"]["counts"]["images"] == 2
    assert results["models"][0]["gps_ap"] is None and results["models"][0]["box_ap"] > 90
