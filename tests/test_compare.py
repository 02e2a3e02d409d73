"""`densepose compare` with hand-made predictors: caching and resuming, skipped models, the
report's files and numbers, agreement. Real (tiny) models and ground truth: test_compare_models.py."""
from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densepose_torch.cli import main
from densepose_torch.compare import CompareConfig, compare, resolve_models, runner
from densepose_torch.compare.agreement import (
    mean_agreement,
    mean_iou,
    pairwise_part_counts,
)
from densepose_torch.compare.report import _nice_ticks
from densepose_torch.compare.summary import latency_stats
from densepose_torch.errors import DensePoseError
from densepose_torch.io.npz import read_npz
from densepose_torch.results import ChartResult, DensePoseResult
from densepose_torch.zoo import ZOO

IMAGE_HEIGHTS = (40, 44, 48, 52, 56)  # distinct, so a fake predictor can tell which image it got


def person_result(image: np.ndarray, split_part: int | None) -> DensePoseResult:
    """Two detections: a confident person (0.95) in the left half, part 5 (the bottom half part
    `split_part` when given), and an unsure one (0.5) in the right half, part 20."""
    height, width = image.shape[:2]
    boxes, charts = [], []
    for left, part, split in ((0, 5, split_part), (width // 2, 20, None)):
        x0, y0, x1, y1 = left + 2.0, 2.0, left + width // 2 - 2.0, height - 2.0
        h, w = int(y1 - y0), int(x1 - x0)
        labels = np.full((h, w), part, np.uint8)
        if split is not None:
            labels[h // 2 :] = split
        uv = np.stack([np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1)), np.tile(np.linspace(0, 1, h, dtype=np.float32)[:, None], (1, w))])
        boxes.append([x0, y0, x1, y1])
        charts.append(ChartResult(int(x0), int(y0), labels, uv))
    return DensePoseResult((height, width), np.array(boxes, np.float32), np.array([0.95, 0.5], np.float32), charts)


class FakePredictor:
    def __init__(self, split_part: int | None, calls: list, interrupt_on_call: int | None):
        self.split_part, self.calls, self.interrupt_on_call = split_part, calls, interrupt_on_call
        self.min_scores: list[float | None] = []

    def batch(self, images, min_score=None):
        if self.interrupt_on_call is not None and len(self.calls) + 1 == self.interrupt_on_call:
            raise KeyboardInterrupt
        self.calls.append([image.shape[0] for image in images])
        self.min_scores.append(min_score)
        results = [person_result(image, self.split_part) for image in images]
        return [result.above(min_score) for result in results] if min_score is not None else results


class FakeLoader:
    """Model "a" paints the left person part 5; "b" splits it into parts 5 and 6. The embedded
    default model does not exist here. `calls[name]` lists the image heights of each batch."""

    def __init__(self, interrupt_on_call: int | None = None):
        self.calls: dict[str, list] = {}
        self.predictors: dict[str, FakePredictor] = {}
        self.interrupt_on_call = interrupt_on_call

    def __call__(self, spec, weights, device, precision):
        if spec.kind == "default":
            raise DensePoseError("no embedded default model in this test")
        calls = self.calls.setdefault(spec.name, [])
        predictor = FakePredictor({"a": None, "b": 6}[spec.name], calls, self.interrupt_on_call)
        self.predictors[spec.name] = predictor
        return predictor


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Five small images, two (empty) checkpoint files a.pth and b.pth, an empty weights cache."""
    monkeypatch.setenv("DENSEPOSE_TORCH_CACHE", str(tmp_path / "weights-cache"))
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index, height in enumerate(IMAGE_HEIGHTS):
        Image.fromarray(rng.integers(0, 255, (height, 60, 3), dtype=np.uint8)).save(images / f"photo{index}.png")
    for name in ("a", "b"):
        (tmp_path / f"{name}.pth").write_bytes(b"")
    return tmp_path


def config(workspace: Path, *models: str, **overrides) -> CompareConfig:
    settings = {"models": models, "images": workspace / "images", "output": workspace / "report", "device": "cpu",
                "batch_size": 2, "min_score": 0.0}
    settings.update(overrides)
    return CompareConfig(**settings)


class ReportParser(HTMLParser):
    """The models table's rows (each cell's data-value and text), and every src/href."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self.links: list[str] = []
        self._table_depth = 0
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.links += [value for key, value in attrs if key in ("src", "href") and value]
        if tag == "table" and attributes.get("id") == "models":
            self._table_depth = 1
        elif self._table_depth and tag == "tr":
            self.rows.append([])
        elif self._table_depth and tag == "td":
            self._cell = [attributes.get("data-value"), ""]

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append((self._cell[0], self._cell[1]))
            self._cell = None
        elif tag == "table" and self._table_depth:
            self._table_depth = 0

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def read_report(folder: Path):
    text = (folder / "index.html").read_text(encoding="utf-8")
    parser = ReportParser()
    parser.feed(text)
    with open(folder / "results.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    return text, [row for row in parser.rows if row], parser.links, table, json.loads((folder / "results.json").read_text())


def check_consistent(folder: Path) -> dict:
    """The report's three files show the same rows and numbers; every picture it links exists
    inside the report folder; nothing is fetched from the network."""
    text, html_rows, links, csv_rows, results = read_report(folder)
    assert "http://" not in text and "https://" not in text
    assert "<script src" not in text and "<link" not in text  # CSS and JS are inline
    for link in links:
        target = (folder / link).resolve()
        assert target.is_file() and target.is_relative_to(folder.resolve()), link
    columns = results["columns"]
    assert len(html_rows) == len(csv_rows) == len(results["models"])
    for html_row, csv_row, row in zip(html_rows, csv_rows, results["models"]):
        assert len(html_row) == len(columns)
        for (value, shown), column in zip(html_row, columns):
            expected = row[column["key"]]
            if expected is None:
                assert csv_row[column["key"]] == value == "" and shown == "-"
            elif column["decimals"] is None:
                assert csv_row[column["key"]] == value == shown == expected
            else:
                assert float(csv_row[column["key"]]) == float(value) == float(shown) == expected
    return results


def test_report_rows_numbers_and_agreement(workspace):
    loader = FakeLoader()
    comparison = compare(config(workspace, "a.pth,b.pth"), loader=loader, progress=False)
    results = check_consistent(workspace / "report")
    assert [row["model"] for row in results["models"]] == ["a", "b"]
    assert all(row["status"] == "ran" for row in results["models"])
    # Both people kept at --min-score 0; at 0.8 only the confident one (below).
    assert [row["detections_per_image"] for row in results["models"]] == [2.0, 2.0]
    # Loaded once each, one warm-up image, then batches of 2 over the 5 images.
    assert loader.calls["a"] == [[40], [40, 44], [48, 52], [56]]
    assert comparison.index == workspace / "report" / "index.html"

    # Agreement, worked out independently over the cached part maps: per part, intersections
    # and unions summed over the images, then the mean over parts either model found.
    cache = workspace / "report" / results["cache"]["a"], workspace / "report" / results["cache"]["b"]
    inter, union = np.zeros(25), np.zeros(25)
    for index in range(len(IMAGE_HEIGHTS)):
        first, second = (read_npz(folder / f"photo{index}.png.npz").to_dense().I for folder in cache)
        for part in range(1, 25):
            inter[part] += np.sum((first == part) & (second == part))
            union[part] += np.sum((first == part) | (second == part))
    expected = float(np.mean(inter[union > 0] / union[union > 0]))
    # Parts 5 (half shared), 6 (not shared) and 20 (identical): strictly between 0 and 1.
    assert 0.4 < expected < 0.6
    assert results["agreement"]["models"] == ["a", "b"]
    assert results["agreement"]["miou"][0][1] == results["agreement"]["miou"][1][0] == pytest.approx(expected, abs=1e-12)
    assert results["agreement"]["miou"][0][0] == results["agreement"]["miou"][1][1] == 1.0
    assert results["models"][0]["mean_agreement"] == round(expected, 3)

    # Latency summary agrees with the per-image timings it comes from (rounded to 0.01 ms there,
    # to 0.1 ms in the table: 0.06 ms covers both roundings).
    latencies = results["per_image"]["a"]["latency_ms"]
    assert len(latencies) == len(IMAGE_HEIGHTS) and all(value > 0 for value in latencies)
    assert results["models"][0]["latency_median_ms"] == pytest.approx(np.median(latencies), abs=0.06)
    assert results["models"][0]["latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95), abs=0.06)
    assert results["models"][0]["load_s"] is not None and results["models"][0]["peak_memory_mb"] > 0


def test_interrupted_run_resumes_without_recomputing(workspace):
    report = workspace / "report"
    interrupted = FakeLoader(interrupt_on_call=3)  # warm-up, batch [photo0, photo1], then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        compare(config(workspace, "a.pth", "b.pth"), loader=interrupted, progress=False)
    assert interrupted.calls == {"a": [[40], [40, 44]]}
    folder = next((report / "cache").iterdir())
    finished = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in folder.glob("*.npz")}
    assert sorted(finished) == ["photo0.png.npz", "photo1.png.npz"]
    assert not list(folder.glob(".*"))  # no temporary file left behind
    assert json.loads((folder / "model.json").read_text())["load_seconds"] is not None

    resumed = FakeLoader()
    compare(config(workspace, "a.pth", "b.pth"), loader=resumed, progress=False)
    # Model a predicts only the three images it had not finished (after one warm-up image).
    assert resumed.calls["a"] == [[48], [48, 52], [56]]
    assert resumed.calls["b"] == [[40], [40, 44], [48, 52], [56]]
    for name, (mtime, content) in finished.items():
        assert (folder / name).stat().st_mtime_ns == mtime and (folder / name).read_bytes() == content
    results = check_consistent(report)
    assert len(results["per_image"]["a"]["latency_ms"]) == len(IMAGE_HEIGHTS)

    # Everything cached: no model is even loaded; a new --min-score redraws the report.
    idle = FakeLoader()
    compare(config(workspace, "a.pth", "b.pth", min_score=0.8), loader=idle, progress=False)
    assert idle.calls == {}
    results = check_consistent(report)
    assert [row["detections_per_image"] for row in results["models"]] == [1.0, 1.0]


def test_min_score_reaches_the_predictor_and_a_lower_one_predicts_again(workspace):
    first = FakeLoader()
    compare(config(workspace, "a.pth", min_score=0.8), loader=first, progress=False)
    # Without ground truth the threshold goes into the predictor (its box predictor), every call.
    assert first.predictors["a"].min_scores == [0.8] * 4
    assert check_consistent(workspace / "report")["models"][0]["detections_per_image"] == 1.0
    # The cache holds only the people above 0.8: a report at 0.3 needs new predictions.
    lower = FakeLoader()
    compare(config(workspace, "a.pth", min_score=0.3), loader=lower, progress=False)
    assert lower.predictors["a"].min_scores == [0.3] * 4
    assert check_consistent(workspace / "report")["models"][0]["detections_per_image"] == 2.0


def test_changed_image_is_predicted_again(workspace):
    compare(config(workspace, "a.pth"), loader=FakeLoader(), progress=False)
    Image.fromarray(np.zeros((44, 60, 3), np.uint8)).save(workspace / "images" / "photo3.png")  # was 52 high
    loader = FakeLoader()
    compare(config(workspace, "a.pth"), loader=loader, progress=False)
    assert loader.calls["a"] == [[44], [44]]


def test_all_lists_missing_weights_as_skipped(workspace):
    cached = workspace / "weights-cache" / ZOO[2].full_name / ZOO[2].file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the real weights")
    compare(config(workspace, "all", "a.pth", limit=2), loader=FakeLoader(), progress=False)
    results = check_consistent(workspace / "report")
    rows = {row["model"]: row for row in results["models"]}
    assert len(rows) == len(ZOO) + 2  # the zoo, the embedded model, a
    assert rows["a"]["status"] == "ran"
    not_downloaded = [row for row in results["models"] if "not downloaded" in row["status"]]
    assert len(not_downloaded) == len(ZOO) - 1
    assert all(row["status"].startswith("skipped") and row["latency_median_ms"] is None for row in not_downloaded)
    # The cached (here corrupt) file was tried: skipped with the loader's reason, not a crash.
    assert "corrupt" in rows[ZOO[2].name]["status"]
    assert rows["default"]["status"] == "skipped: no embedded default model in this test"
    assert rows[ZOO[0].name]["zoo_gpsm_ap"] == ZOO[0].metrics.gpsm_ap
    assert results["agreement"]["models"] == ["a"]
    assert results["images"] == ["photo0.png", "photo1.png"]


class RecordingBar:
    """Stands in for tqdm: keeps its total and the updates it got."""

    bars: list["RecordingBar"] = []

    def __init__(self, *args, total=None, **options):
        self.total, self.done = total, 0
        RecordingBar.bars.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, count=1):
        self.done += count

    def set_postfix_str(self, text):
        pass

    def refresh(self):
        pass


def test_the_progress_bar_counts_only_work_to_do(workspace, monkeypatch):
    monkeypatch.setattr(runner, "tqdm", RecordingBar)
    RecordingBar.bars = []
    compare(config(workspace, "all", "a.pth", limit=2), loader=FakeLoader(), progress=False)
    (bar,) = RecordingBar.bars
    # Of the zoo, the embedded model and a, only a runs (2 images); the cached corrupt zoo file
    # is tried and fails to load: its 2 images leave the total instead of counting as done.
    assert (bar.total, bar.done) == (2, 2)
    RecordingBar.bars = []
    compare(config(workspace, "a.pth", limit=2), loader=FakeLoader(), progress=False)
    assert [(bar.total, bar.done) for bar in RecordingBar.bars] == [(0, 0)]  # all cached


def run_cli(*argv) -> int:
    """`densepose compare ...` as the console script runs it (errors become a message and an exit code)."""
    return main(["compare", *[str(a) for a in argv]])


def test_cli_errors_are_one_line(workspace, capsys):
    report = workspace / "report"
    assert run_cli("--models", "a.pth", "--images", workspace / "missing", "-o", report) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert run_cli("--models", workspace / "nothing.pth", "--images", workspace / "images", "-o", report) == 1
    assert "no such checkpoint file" in capsys.readouterr().err
    assert run_cli("--models", "R_50_FPN_s1", "--images", workspace / "images", "-o", report) == 1
    assert "did you mean R_50_FPN_s1x" in capsys.readouterr().err
    assert run_cli("--models", workspace / "a.pth", "--images", workspace / "images", "-o", report, "--min-score", "2") == 1
    assert "--min-score" in capsys.readouterr().err
    # A checkpoint that does not load: listed as skipped, and no model ran, so the exit code says so.
    assert run_cli("--models", workspace / "a.pth", "--images", workspace / "images", "-o", report, "--device", "cpu") == 1
    assert "skipped a: cannot read checkpoint" in capsys.readouterr().err
    assert "skipped: cannot read checkpoint" in json.loads((report / "results.json").read_text())["models"][0]["status"]


def test_resolve_models_names_and_duplicates(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.pth").write_bytes(b"")
    specs = resolve_models([f"R_50_FPN_s1x,{tmp_path / 'x' / 'model.pth'}", str(tmp_path / "y" / "model.pth"), "densepose_rcnn_R_50_FPN_s1x"])
    assert [(spec.name, spec.kind) for spec in specs] == [("R_50_FPN_s1x", "zoo"), ("model", "path"), ("y/model", "path")]
    assert all(spec.skip_reason is None for spec in specs)  # explicit names may be downloaded
    with pytest.raises(DensePoseError, match="names no model"):
        resolve_models([","])


def test_agreement_counts_and_means():
    first = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    second = np.array([[0, 1, 2], [2, 2, 2]], np.uint8)
    inter, union = pairwise_part_counts([first, second, None])
    assert inter[0, 1, 0] == 1 and union[0, 1, 0] == 2  # part 1: one shared pixel of two
    assert inter[0, 1, 1] == 2 and union[0, 1, 1] == 4  # part 2
    assert not union[2].any()
    matrix = mean_iou(inter, union)
    assert matrix[0][1] == matrix[1][0] == pytest.approx((1 / 2 + 2 / 4) / 2, abs=1e-12)
    assert matrix[0][0] == 1.0 and matrix[2][2] is None
    assert mean_agreement(matrix) == [pytest.approx(0.5), pytest.approx(0.5), None]
    empty = np.zeros((2, 2), np.uint8)
    assert mean_iou(*pairwise_part_counts([empty, empty])) == [[None, None], [None, None]]


def test_latency_stats_and_ticks():
    stats = latency_stats([0.1, 0.2, 0.3, 0.4])
    assert stats["latency_median_ms"] == pytest.approx(250.0)
    assert stats["latency_p95_ms"] == pytest.approx(385.0)  # linear interpolation: 0.3 + 0.85 * 0.1
    assert stats["images_per_s"] == pytest.approx(4.0)
    assert latency_stats([])["images_per_s"] is None
    assert _nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert _nice_ticks(3.3, 17.0) == pytest.approx([0.0, 5.0, 10.0, 15.0, 20.0])
