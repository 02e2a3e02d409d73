"""COCO DensePose results files: writing, reading back, and the real 2018-format example."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from densepose_torch.errors import DensePoseError
from densepose_torch.io.coco_results import decode_chart, load_results, result_to_records, write_results
from densepose_torch.results import ChartResult, DensePoseResult

from .shared import shared_path


def _result() -> DensePoseResult:
    rng = np.random.default_rng(0)
    charts = []
    for x, y, h, w in ((5, 7, 30, 20), (40, 2, 25, 45)):
        labels = rng.integers(0, 25, size=(h, w)).astype(np.uint8)
        uv = rng.uniform(-0.1, 1.1, size=(2, h, w)).astype(np.float32) * (labels > 0)
        charts.append(ChartResult(x=x, y=y, labels=labels, uv=uv))
    # The second box pokes out of the 50 x 80 image: its mask must be clipped.
    boxes = np.array([[5.6, 7.2, 25.9, 37.8], [40.3, 2.9, 85.4, 28.1]], np.float32)
    return DensePoseResult(image_size=(50, 80), boxes=boxes, scores=np.array([0.9, 0.4], np.float32), charts=charts)


def test_quantisation_truncates_and_clamps_like_detectron2():
    labels = np.ones((1, 5), np.uint8)
    uv = np.array([[[0.5, 1.2, -0.1, 1.0, 0.999]], [[0.0, 0.2, 0.3, 0.7, 0.004]]], np.float32)
    result = DensePoseResult((1, 5), np.array([[0, 0, 5, 1]], np.float32), np.array([1.0], np.float32), [ChartResult(0, 0, labels, uv)])
    chart = decode_chart(result_to_records(result, image_id=1)[0])
    # (uv * 255) in float32, clamped to [0, 255], cast to uint8 (truncation): 127.5 -> 127.
    assert chart[1].tolist() == [[127, 255, 0, 255, 254]]
    expected_v = (np.float32([0.0, 0.2, 0.3, 0.7, 0.004]) * np.float32(255)).astype(np.uint8)
    assert chart[2].tolist() == [expected_v.tolist()]


def test_round_trip(tmp_path):
    result = _result()
    records = result_to_records(result, image_id=12, file_name="photo.jpg")
    path = tmp_path / "out" / "results.json"
    write_results(path, records)
    loaded = load_results(path)
    assert len(loaded) == 2
    for record, box, score, chart in zip(loaded, result.boxes, result.scores, result.charts):
        assert record["image_id"] == 12 and record["file_name"] == "photo.jpg" and record["category_id"] == 1
        x0, y0, x1, y1 = box.astype(np.float64)
        assert record["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-12)  # float32 box, exactly
        assert record["score"] == pytest.approx(float(score), abs=0)
        assert record["uv_shape"] == [3, chart.height, chart.width]
        expected = np.clip(chart.uv * np.float32(255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(record["labels_uv"][0], chart.labels)
        np.testing.assert_array_equal(record["labels_uv"][1:], expected)
        # The segmentation is the chart's body pasted into the image, clipped.
        pasted = np.zeros((50, 80), bool)
        window = pasted[chart.y : chart.y + chart.height, chart.x : chart.x + chart.width]
        window[...] = chart.labels[: window.shape[0], : window.shape[1]] > 0
        assert isinstance(record["segmentation"]["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(record["segmentation"]).astype(bool), pasted)
    # Loaded records can be written again (the decoded chart is not JSON) and stay the same.
    write_results(tmp_path / "again.json", loaded)
    again = load_results(tmp_path / "again.json")
    for first, second in zip(loaded, again):
        np.testing.assert_array_equal(first["labels_uv"], second["labels_uv"])


def test_example_results_decode():
    records = load_results(shared_path("data", "example_results.json"))
    assert len(records) == 21
    assert {record["image_id"] for record in records} == {785, 872, 885}
    for record in records:
        chart = record["labels_uv"]
        x, y, w, h = record["bbox"]
        # The chart covers the box: uv_shape = [3, int(h), int(w)] (w, h are whole numbers here).
        assert chart.dtype == np.uint8 and list(chart.shape) == record["uv_shape"] == [3, int(h), int(w)]
        assert w == int(w) and h == int(h)
        assert chart[0].max() <= 24
        background = chart[0] == 0
        # Channel order R = I, G = U, B = V: U and V are 0 exactly where I is background.
        assert not chart[1][background].any() and not chart[2][background].any()
        assert 0.0 < record["score"] <= 1.0
    big = [record for record in records if record["score"] > 0.99 and record["bbox"][3] > 100]
    assert len(big) >= 4
    for record in big:
        body = record["labels_uv"][0] > 0
        assert 0.2 < body.mean() < 0.7  # a person covers part of its box
        assert len(np.unique(record["labels_uv"][0][body])) >= 10  # and many body parts


def _write(path: Path, payload) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_malformed_files_give_one_line_errors(tmp_path):
    good = json.loads(shared_path("data", "example_results.json").read_text())[0]
    cases = {
        "missing.json": None,
        "broken.json": "[{",
        "object.json": {"annotations": []},
        "nokey.json": [{k: v for k, v in good.items() if k != "uv_data"}],
        "badbox.json": [dict(good, bbox=[1, 2, 3])],
        "badpng.json": [dict(good, uv_data="bm90IGEgcG5n")],
        "badshape.json": [dict(good, uv_shape=[3, 10, 10])],
    }
    for name, payload in cases.items():
        path = tmp_path / name if payload is None else _write(tmp_path / name, payload)
        with pytest.raises(DensePoseError) as error:
            load_results(path)
        message = str(error.value)
        assert "\n" not in message and len(message) < 300, message
