"""DensePose evaluation rules (detectron2's DensePoseCocoEval), each on a small case whose figures are worked out by hand.

The body surface is a fake: every part has a 3 x 3 grid of vertices at U, V in {1/6, 1/2, 5/6},
parts 10 m apart, and the geodesic distance inside a part is the (U, V) distance in metres. A
prediction that lands on the GT vertex scores exp(0) = 1, one on another part scores 0.
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densepose_torch.errors import DensePoseError
from densepose_torch.evaluation import ChartVertices, DenseGeodesicSurface, evaluate, points_to_annotation
from densepose_torch.evaluation.average_precision import iou_thresholds
from densepose_torch.evaluation.similarity import gps_matrix, mask_iou_matrix
from densepose_torch.evaluation.vertex_surfaces import condensed_index
from densepose_torch.io.coco_results import load_results

from .shared import shared_path

GRID = np.array([1 / 6, 1 / 2, 5 / 6])
FIGURES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def grid_surface() -> DenseGeodesicSurface:
    parts, uv, position = [], [], []
    for part in range(1, 25):
        for u in GRID:
            for v in GRID:
                parts.append(part)
                uv.append((u, v))
                position.append((10.0 * part, u, v))
    position = np.array(position)
    distances = np.linalg.norm(position[:, None] - position[None], axis=-1)
    return DenseGeodesicSurface(ChartVertices(np.array(parts), np.array(uv)), distances)


SURFACE = grid_surface()


def full_mask_rles() -> list:
    """dp_masks of a person filling its whole box: the torso mask set everywhere."""
    torso = mask_utils.encode(np.asfortranarray(np.ones((256, 256), np.uint8)))
    torso["counts"] = torso["counts"].decode("ascii")
    return [torso] + [[]] * 13


class Scene:
    """Builds a ground-truth dict and matching results records."""

    def __init__(self):
        self.images, self.annotations, self.detections = [], [], []
        self.rng = np.random.default_rng(0)

    def image(self, image_id: int, height: int = 400, width: int = 600) -> int:
        self.images.append({"id": image_id, "height": height, "width": width, "file_name": f"{image_id:06d}.jpg"})
        return image_id

    def person(self, image_id: int, box, dense: bool = True, num_points: int = 40, crowd: bool = False):
        """A person filling its integer box, with its dense truth; returns (annotation, chart)."""
        x, y, w, h = box
        parts = 1 + (np.arange(w)[None, :] * 24 // w) * np.ones((h, 1), np.int64)
        chart = np.stack([parts, self.rng.integers(0, 256, (h, w)), self.rng.integers(0, 256, (h, w))]).astype(np.uint8)
        ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": 1, "bbox": [float(v) for v in box],
               "area": float(w * h), "iscrowd": int(crowd)}
        if dense:
            cols, rows = self.rng.integers(0, w, num_points), self.rng.integers(0, h, num_points)
            # Pixel centres in the 255-scaled box (what the evaluator maps back with /255).
            ann.update(
                dp_x=((cols + 0.5) * 255.0 / w).tolist(), dp_y=((rows + 0.5) * 255.0 / h).tolist(),
                dp_I=chart[0, rows, cols].astype(float).tolist(),
                dp_U=(chart[1, rows, cols] / 255.0).tolist(), dp_V=(chart[2, rows, cols] / 255.0).tolist(),
                dp_masks=full_mask_rles(),
            )
        self.annotations.append(ann)
        return ann, chart

    def detect(self, image_id: int, box, chart: np.ndarray, score: float) -> dict:
        record = {"image_id": image_id, "category_id": 1, "bbox": [float(v) for v in box], "score": score, "labels_uv": chart}
        self.detections.append(record)
        return record

    def ground_truth(self) -> dict:
        return {"images": self.images, "annotations": self.annotations, "categories": [{"id": 1, "name": "person"}]}

    def evaluate(self, **kwargs) -> dict:
        return evaluate(self.ground_truth(), self.detections, kwargs.pop("surface", SURFACE), **kwargs)


def test_perfect_predictions_score_100():
    scene = Scene()
    for image_id, boxes in ((1, [(10, 20, 40, 60), (200, 30, 150, 220)]), (2, [(50, 50, 120, 100)]), (3, [(300, 100, 50, 45)])):
        scene.image(image_id)
        for index, box in enumerate(boxes):
            _, chart = scene.person(image_id, box)
            scene.detect(image_id, box, chart, score=0.9 - 0.1 * index)
    metrics = scene.evaluate()
    for mode in ("gps", "gpsm", "iou"):
        assert metrics[mode] == {name: pytest.approx(100.0, abs=1e-9) for name in FIGURES}, mode
    assert metrics["bbox"]["AP"] == pytest.approx(100.0, abs=1e-9)
    assert "AP20" not in metrics["gps"] and len(metrics["settings"]["thresholds"]) == 10


def test_gps_counts_points_just_left_of_the_box_as_inside():
    # Detection box x = 10.5, w = 40.7: columns 0..39 (int(w) = 40) of a 40-wide chart.
    # GT box at x = 10 with width 255 so that dp_x is the image offset from 10 directly.
    scene = Scene()
    scene.image(1)
    image_x = np.array([10.0, 9.0, 49.9, 51.0, 30.0])  # -> x - 10.5 = -0.5, -1.5, 39.4, 40.5, 19.5
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 255.0, 255.0], "area": 65025.0, "iscrowd": 0,
           "dp_x": (image_x - 10.0).tolist(), "dp_y": [20.0] * 5, "dp_I": [1.0] * 5, "dp_U": [0.5] * 5, "dp_V": [0.5] * 5}
    chart = np.zeros((3, 50, 40), np.uint8)
    chart[0] = 1
    chart[1:] = 128  # U = V = 128/255: the vertex (1/2, 1/2) of part 1, the GT's vertex
    bbox = np.array([[10.5, 10.0, 40.7, 50.0]])
    gps = gps_matrix([ann], bbox, [chart], SURFACE)
    # int(-0.5) = 0 is inside; int(-1.5) = -1 and int(40.5) = 40 >= int(40.7) are outside and
    # score 0; the other three hit their vertex and score 1.
    assert gps[0, 0] == pytest.approx(3 / 5, abs=1e-12)


def test_gps_per_part_normalisers():
    # Part 1 (torso, kappa 0.351) and part 3 (hand, kappa 0.107); each prediction one grid
    # step (1/3 in U, i.e. 1/3 m) from its GT vertex; a third point is predicted background.
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 255.0, 255.0], "area": 65025.0, "iscrowd": 0,
           "dp_x": [1.0, 2.0, 3.0], "dp_y": [1.0, 1.0, 1.0], "dp_I": [1.0, 3.0, 5.0],
           "dp_U": [1 / 6, 1 / 6, 0.5], "dp_V": [0.5, 0.5, 0.5]}
    chart = np.zeros((3, 10, 10), np.uint8)
    chart[:, 1, 1] = (1, 128, 128)  # part 1 at U = 0.502: vertex (1/2, 1/2)
    chart[:, 1, 2] = (3, 128, 128)  # part 3, same
    gps = gps_matrix([ann], np.array([[0.0, 0.0, 10.0, 10.0]]), [chart], SURFACE)
    step = 1 / 3
    expected = (math.exp(-step**2 / (2 * 0.351**2)) + math.exp(-step**2 / (2 * 0.107**2)) + 0.0) / 3
    assert gps[0, 0] == pytest.approx(expected, rel=1e-12)


def test_condensed_index_equals_the_official_formula():
    n = 27554

    def official(i, j):  # getDistancesUV, DensePoseCocoEval's, written out again as a test oracle
        if j > i:
            i, j = j, i
        i, j = n - i - 1, n - j - 1
        k = (n * (n - 1) / 2) - (n - i) * ((n - i) - 1) / 2 + j - i - 1
        return int((n * n - n) / 2 - k - 1)

    rng = np.random.default_rng(1)
    pairs = rng.integers(0, n, (2000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.concatenate([pairs, [[n - 1, 0], [n - 1, n - 2], [1, 0]]])
    high, low = pairs.max(axis=1), pairs.min(axis=1)
    assert condensed_index(high, low).tolist() == [official(int(a), int(b)) for a, b in pairs]
    assert condensed_index(n - 1, n - 2) == n * (n - 1) // 2 - 1


def test_person_without_densepose_points_is_ignored():
    scene = Scene()
    scene.image(1)
    _, chart = scene.person(1, (10, 10, 100, 150))
    scene.person(1, (300, 10, 100, 150), dense=False)
    scene.detect(1, (10, 10, 100, 150), chart, 0.9)
    assert scene.evaluate()["gps"]["AR"] == pytest.approx(100.0, abs=1e-9)
    # The same person with DensePose points would count: half of the persons found.
    scene.annotations[1].update({k: v for k, v in scene.annotations[0].items() if k.startswith("dp_")})
    assert scene.evaluate()["gps"]["AR"] == pytest.approx(50.0, abs=1e-9)


def _unannotated_person_scene(shift: int) -> Scene:
    scene = Scene()
    scene.image(1)
    _, chart = scene.person(1, (10, 10, 100, 150))
    scene.person(1, (300, 10, 100, 150), dense=False)
    scene.detect(1, (10, 10, 100, 150), chart, 0.5)
    # A higher-scoring detection of the unannotated person, its box shifted right by `shift`.
    scene.detect(1, (300 + shift, 10, 100, 150), chart, 0.9)
    return scene


def test_detection_of_unannotated_person_is_not_a_false_positive():
    # shift 5: box IoU 145/155 = 0.935 >= 0.8 -> the detection takes the person's ignore flag.
    for mode, figures in _unannotated_person_scene(5).evaluate().items():
        if mode in ("gps", "gpsm", "iou"):
            assert figures["AP"] == pytest.approx(100.0, abs=1e-9), mode
    # shift 30: box IoU 70/130 = 0.54 < 0.8 -> a false positive ranked first: precision 1/2
    # at every recall (envelope), AP = 50 (up to the eps in tp / (tp + fp + eps)).
    assert _unannotated_person_scene(30).evaluate()["gps"]["AP"] == pytest.approx(50.0, abs=1e-9)


def test_detections_on_image_without_persons_are_ignored():
    scene = Scene()
    scene.image(1)
    scene.image(2)  # no annotation at all
    _, chart = scene.person(1, (10, 10, 100, 150))
    scene.detect(1, (10, 10, 100, 150), chart, 0.5)
    scene.detect(2, (10, 10, 100, 150), chart, 0.9)
    scene.detect(2, (200, 10, 100, 150), chart, 0.8)
    metrics = scene.evaluate()
    assert metrics["gps"]["AP"] == pytest.approx(100.0, abs=1e-9)
    # Box AP (standard COCO) does count them: two false positives ranked first -> 1/3.
    assert metrics["bbox"]["AP"] == pytest.approx(100 / 3, abs=1e-6)


def test_only_20_detections_per_image():
    scene = Scene()
    scene.image(1, height=100, width=300)
    for index in range(21):
        box = (2 + 40 * (index % 7), 2 + 32 * (index // 7), 30, 28)
        _, chart = scene.person(1, box, num_points=5)
        scene.detect(1, box, chart, 1.0 - 0.01 * index)
    gps = scene.evaluate()["gps"]
    # The 21st detection is dropped: recall 20/21, precision 1 for recall thresholds
    # 0.00 ... 0.95 (96 of the 101) and 0 above.
    assert gps["AP"] == pytest.approx(96 / 101 * 100, abs=1e-9)
    assert gps["AR"] == pytest.approx(20 / 21 * 100, abs=1e-9)


def test_min_iou_thresholds_and_apex_figures():
    assert np.allclose(iou_thresholds(0.5), np.arange(10) * 0.05 + 0.5, atol=1e-12)
    assert np.allclose(iou_thresholds(0.2), np.arange(16) * 0.05 + 0.2, atol=1e-12)
    scene = Scene()
    scene.image(1)
    ann, chart = scene.person(1, (10, 10, 160, 150), num_points=8)
    # 3 of the 8 points predicted right, the others background: GPS = 3/8 = 0.375.
    wrong = np.zeros(chart.shape[1:], bool)
    rows = (np.array(ann["dp_y"]) * 150 / 255).astype(int)
    cols = (np.array(ann["dp_x"]) * 160 / 255).astype(int)
    wrong[rows[3:], cols[3:]] = True
    wrong[rows[:3], cols[:3]] = False
    chart = chart * ~wrong
    scene.detect(1, (10, 10, 160, 150), chart, 0.9)
    apex = scene.evaluate(min_iou=0.2)["gps"]
    # Thresholds 0.20, 0.25, 0.30, 0.35 of 16 are passed (4/16 = 25 %).
    assert apex["AP"] == pytest.approx(25.0, abs=1e-9)
    assert apex["AP20"] == apex["AP30"] == pytest.approx(100.0, abs=1e-9)
    assert apex["AP40"] == apex["AP50"] == 0.0
    standard = scene.evaluate(min_iou=0.5)["gps"]
    assert standard["AP"] == 0.0 and "AP20" not in standard and "AP40" not in standard
    assert list(scene.evaluate(min_iou=0.3)["gps"])[:4] == ["AP", "AP30", "AP40", "AP50"]
    with pytest.raises(DensePoseError):
        scene.evaluate(min_iou=0.99)


def test_area_ranges():
    scene = Scene()
    scene.image(1)
    _, chart = scene.person(1, (10, 10, 40, 40))  # area 1600: medium
    scene.detect(1, (10, 10, 40, 40), chart, 0.5)
    # A large detection of nobody, ranked first: a false positive.
    scene.detect(1, (300, 10, 150, 150), np.ones((3, 150, 150), np.uint8), 0.9)
    gps = scene.evaluate()["gps"]
    assert gps["AP"] == pytest.approx(50.0, abs=1e-9)
    # Medium range: the unmatched large detection is outside the range, hence ignored.
    assert gps["APm"] == pytest.approx(100.0, abs=1e-9) and gps["ARm"] == pytest.approx(100.0, abs=1e-9)
    # Large range: no person of that size, nothing is defined (the official -1).
    assert gps["APl"] is None and gps["ARl"] is None


def test_crowd_region_absorbs_detections():
    scene = Scene()
    scene.image(1)
    _, chart = scene.person(1, (10, 10, 100, 150))
    crowd, _ = scene.person(1, (250, 10, 300, 200), dense=False, crowd=True)
    crowd["segmentation"] = mask_utils.frPyObjects([[250, 10, 550, 10, 550, 210, 250, 210]], 400, 600)[0]
    crowd["segmentation"]["counts"] = crowd["segmentation"]["counts"].decode("ascii")
    scene.detect(1, (10, 10, 100, 150), chart, 0.5)
    # Two detections inside the crowd (box IoU against a crowd = intersection / detection
    # area = 1): both take the crowd's ignore flag although a crowd is matched repeatedly.
    scene.detect(1, (260, 20, 100, 150), chart, 0.9)
    scene.detect(1, (400, 20, 100, 150), chart, 0.8)
    metrics = scene.evaluate()
    for mode in ("gps", "gpsm", "iou"):
        assert metrics[mode]["AP"] == pytest.approx(100.0, abs=1e-9), mode


def test_mask_iou_uses_the_dp_masks_resized_to_the_box():
    # A person whose dp_masks cover the left half of its 100 x 100 box, and a detection
    # covering the whole box: IoU = 5000 / 10000.
    left = np.zeros((256, 256), np.uint8)
    left[:, :128] = 1
    rle = mask_utils.encode(np.asfortranarray(left))
    ann = {"id": 1, "bbox": [20.0, 30.0, 100.0, 100.0], "iscrowd": 0, "dp_masks": [[], rle] + [[]] * 12}
    chart = np.ones((3, 100, 100), np.uint8)
    iou = mask_iou_matrix([ann], np.array([[20.0, 30.0, 100.0, 100.0]]), [chart], (200, 200))
    assert iou[0, 0] == pytest.approx(0.5, abs=1e-12)


def test_iou_mode_equals_pycocotools_box_ap_on_box_shaped_masks():
    """With every person and detection a full box (integer, inside the image, at most 20
    detections per image, every image with a medium and a large person so that the DensePose
    "all persons ignored" rule never fires), the IOU mode reduces to COCO box matching: its
    figures must equal pycocotools' bbox ones. This checks matching and accumulation against an
    independent implementation."""
    rng = np.random.default_rng(7)
    scene = Scene()
    for image_id in range(1, 9):
        scene.image(image_id, height=300, width=400)
        sizes = [(40, 81), (110, 151)] + [(20, 160)] * int(rng.integers(0, 3))  # medium, large, any
        for low, high in sizes:
            w, h = int(rng.integers(low, high)), int(rng.integers(low, high))
            x, y = int(rng.integers(0, 400 - w)), int(rng.integers(0, 300 - h))
            ann, _ = scene.person(image_id, (x, y, w, h), num_points=3)
            # The exact box as the person's mask (resizing dp_masks can lose an edge column).
            del ann["dp_masks"]
            box_mask = np.zeros((300, 400), np.uint8)
            box_mask[y : y + h, x : x + w] = 1
            ann["segmentation"] = mask_utils.encode(np.asfortranarray(box_mask))
            for _ in range(rng.integers(0, 4)):
                dx, dy, dw, dh = rng.integers(-12, 13, 4)
                bw, bh = int(np.clip(w + dw, 5, 400)), int(np.clip(h + dh, 5, 300))
                bx, by = int(np.clip(x + dx, 0, 400 - bw)), int(np.clip(y + dy, 0, 300 - bh))
                scene.detect(image_id, (bx, by, bw, bh), np.ones((3, bh, bw), np.uint8), float(rng.uniform()))
        for _ in range(rng.integers(0, 3)):  # plain false positives
            scene.detect(image_id, (int(rng.integers(0, 300)), int(rng.integers(0, 200)), 60, 80),
                         np.ones((3, 80, 60), np.uint8), float(rng.uniform()))
    ours = scene.evaluate(surface=None)
    assert set(ours) == {"iou", "bbox", "settings", "counts"}

    coco_gt = COCO()
    coco_gt.dataset = scene.ground_truth()
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes([{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in scene.detections])
    reference = COCOeval(coco_gt, coco_dt, iouType="bbox")
    reference.evaluate()
    reference.accumulate()
    reference.summarize()
    ap, ap50, ap75, _, apm, apl, _, _, ar, _, arm, arl = reference.stats * 100
    # Same integer pixel counts on both sides: equal up to float summation order.
    expected = {"AP": ap, "AP50": ap50, "AP75": ap75, "APm": apm, "APl": apl, "AR": ar, "ARm": arm, "ARl": arl}
    assert {k: ours["iou"][k] for k in expected} == pytest.approx(expected, abs=1e-9)
    assert 10 < ap < 90 and 10 < ap50 < 90  # a case with both hits and misses
    assert ours["bbox"]["AP"] == pytest.approx(ap, abs=1e-9)


def test_unknown_image_ids_and_bad_inputs_are_one_line_errors():
    scene = Scene()
    scene.image(1)
    _, chart = scene.person(1, (10, 10, 100, 150))
    scene.detect(7, (10, 10, 100, 150), chart, 0.5)
    with pytest.raises(DensePoseError, match="not in the ground truth"):
        scene.evaluate()
    with pytest.raises(DensePoseError, match="no such annotation file"):
        evaluate("/nonexistent/gt.json", [], SURFACE)
    with pytest.raises(DensePoseError, match="needs id, height and width"):
        evaluate({"images": [{"id": 1}], "annotations": []}, [], SURFACE)


def test_records_are_matched_to_images_by_file_name():
    scene = Scene()
    scene.image(5)
    _, chart = scene.person(5, (10, 10, 100, 150))
    record = scene.detect(999, (10, 10, 100, 150), chart, 0.5)
    record["file_name"] = "some/dir/000005.jpg"
    assert scene.evaluate()["gps"]["AP"] == pytest.approx(100.0, abs=1e-9)


def test_real_annotation_converts_and_a_perfect_prediction_scores_100():
    with open(shared_path("data", "demo_dp_single_ann.pkl"), "rb") as handle:
        demo = pickle.load(handle, encoding="latin1")  # a Python 2 pickle
    height, width = demo["ICrop"].shape[:2]
    assert (height, width) == (355, 341) and demo["I"].shape == (125,)
    ann = points_to_annotation((0, 0, width, height), demo["x"], demo["y"], demo["I"], demo["U"], demo["V"])
    assert np.allclose(np.array(ann["dp_x"]) * width / 256, demo["x"], atol=1e-9)
    assert min(ann["dp_x"]) >= 0 and max(ann["dp_x"]) < 256 and set(ann["dp_I"]) <= set(range(1, 25))
    gt = {"images": [{"id": 1, "height": height, "width": width}], "annotations": [ann]}
    # The prediction a perfect model would make: the GT values at the pixels the evaluator
    # reads (dp_x * w / 255, truncated), quantised as detectron2 does.
    chart = np.zeros((3, height, width), np.uint8)
    cols = (np.array(ann["dp_x"]) * width / 255.0).astype(int)
    rows = (np.array(ann["dp_y"]) * height / 255.0).astype(int)
    chart[0, rows, cols] = demo["I"].astype(np.uint8)
    chart[1, rows, cols] = np.clip(demo["U"] * 255, 0, 255).astype(np.uint8)
    chart[2, rows, cols] = np.clip(demo["V"] * 255, 0, 255).astype(np.uint8)
    record = {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, float(width), float(height)], "score": 0.99, "labels_uv": chart}
    gps = gps_matrix([ann], np.array([record["bbox"]]), [chart], SURFACE)[0, 0]
    # Quantising U, V down by < 1/255 moves a few points across a vertex cell border of the
    # coarse fake surface; GPS stays far above the highest threshold.
    assert 0.95 < gps <= 1.0
    assert evaluate(gt, [record], SURFACE)["gps"]["AP"] == pytest.approx(100.0, abs=1e-9)


def test_real_results_file_against_ground_truth_built_from_it():
    records = load_results(shared_path("data", "example_results.json"))
    # Ground truth: the confident detections themselves (40 points on their body pixels each);
    # they must then be found at every threshold, and the rest rank below them.
    rng = np.random.default_rng(3)
    annotations = []
    for record in records:
        if record["score"] < 0.9 or record["bbox"][3] < 50:
            continue
        x, y, w, h = record["bbox"]
        rows, cols = np.nonzero(record["labels_uv"][0])
        pick = rng.choice(rows.size, 40, replace=False)
        rows, cols = rows[pick], cols[pick]
        chart = record["labels_uv"]
        annotations.append({
            "id": len(annotations) + 1, "image_id": record["image_id"], "category_id": 1, "iscrowd": 0,
            "bbox": [x, y, w, h], "area": w * h,
            "dp_x": ((cols + 0.5) * 255.0 / w).tolist(), "dp_y": ((rows + 0.5) * 255.0 / h).tolist(),
            "dp_I": chart[0, rows, cols].astype(float).tolist(),
            "dp_U": (chart[1, rows, cols] / 255.0).tolist(), "dp_V": (chart[2, rows, cols] / 255.0).tolist(),
        })
    assert len(annotations) >= 5
    gt = {"images": [{"id": i, "height": 640, "width": 640} for i in (785, 872, 885)], "annotations": annotations}
    metrics = evaluate(gt, records, SURFACE)
    assert metrics["gps"]["AP"] == pytest.approx(100.0, abs=1e-9)
    assert metrics["gps"]["AR"] == pytest.approx(100.0, abs=1e-9)
    assert metrics["counts"]["detections"] == 21
