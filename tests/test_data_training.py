"""Training data: DensePose-COCO reading and filtering, dp_masks decoding, resize + flip
augmentation (boxes, points, masks and image stay consistent), symmetry tables, batching order."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from densepose_torch.chart_symmetry import FlipSymmetry, load_flip_symmetry
from densepose_torch.data.densepose_coco import (
    DensePosePoints,
    PersonAnnotation,
    decode_coarse_segmentation,
    read_records,
    training_records,
)
from densepose_torch.data.loader import (
    StreamBatchSampler,
    TrainingDataset,
    build_train_loader,
)
from densepose_torch.data.mapper import Augmentation, map_sample, person_densepose
from densepose_torch.definitions import COARSE_PART_SYMMETRY, PART_SYMMETRY
from densepose_torch.errors import DensePoseError
from densepose_torch.synthetic.parts import uv_symmetry_tables

from .test_chart_symmetry import uv_tables_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def test_dp_masks_decode_later_parts_overwrite_and_single_rle_is_binary():
    torso = np.zeros((256, 256), bool)
    torso[10:100, 10:100] = True
    head = np.zeros((256, 256), bool)
    head[50:60, 50:60] = True  # inside the torso: part 14 comes later and wins
    masks = [_rle(torso)] + [[]] * 12 + [_rle(head)]
    segm = decode_coarse_segmentation(masks)
    assert segm[20, 20] == 1 and segm[55, 55] == 14 and segm[200, 200] == 0
    assert set(np.unique(decode_coarse_segmentation(_rle(head)))) == {0, 1}


def test_read_records_filters_like_detectron2(tmp_path):
    (tmp_path / "img").mkdir()
    points = {"dp_x": [10.0], "dp_y": [20.0], "dp_I": [3], "dp_U": [0.5], "dp_V": [0.25]}
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 50, "width": 60} for i in (1, 2, 3)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0, **points},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 5, 5], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0},  # no DensePose
            {"id": 4, "image_id": 3, "category_id": 18, "bbox": [1, 2, 10, 20], **points},  # not a person
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    records = read_records(path, tmp_path / "img")
    assert [len(r.persons) for r in records] == [2, 1, 0]
    kept = training_records(records)
    assert [r.image_id for r in kept] == [1]
    first = kept[0].persons[0]
    np.testing.assert_array_equal(first.box, [1, 2, 11, 22])
    assert first.points.parts.tolist() == [3] and not first.crowd and kept[0].persons[1].crowd


def _person(box, xs, ys, parts, us, vs, masks=None) -> PersonAnnotation:
    points = DensePosePoints(np.float32(xs), np.float32(ys), np.int64(parts), np.float32(us), np.float32(vs))
    return PersonAnnotation(np.array(box, np.float64), False, points, masks)


def test_flip_twice_is_identity_exact_symmetry_and_within_a_bin_with_tables():
    rng = np.random.default_rng(0)
    segm = rng.integers(0, 15, (256, 256)).astype(np.uint8)
    masks = [_rle(segm == k) if (segm == k).any() else [] for k in range(1, 15)]
    n = 200
    person = _person([0, 0, 10, 10], rng.uniform(0, 256, n), rng.uniform(0, 256, n), rng.integers(1, 25, n),
                     rng.uniform(0, 1, n), rng.uniform(0, 1, n), masks)
    once = person_densepose(person, True, FlipSymmetry())
    twice = person_densepose(_person([0, 0, 10, 10], once.x, once.y, once.parts, once.u, once.v,
                                     [_rle(once.coarse_segm == k) if (once.coarse_segm == k).any() else [] for k in range(1, 15)]),
                             True, FlipSymmetry())
    np.testing.assert_array_equal(twice.parts, person.points.parts)
    # 256 - (256 - x) in float32 is x up to one rounding at magnitude 256 (ulp 3e-5).
    np.testing.assert_allclose(twice.x, person.points.x, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(twice.u, person.points.u)
    # V of the torso parts is mirrored as 1 - V: twice, one float32 rounding (< 1e-7) away.
    np.testing.assert_allclose(twice.v, person.points.v, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(twice.coarse_segm, segm)
    assert not np.array_equal(once.coarse_segm, segm)
    np.testing.assert_array_equal(once.parts, np.asarray(PART_SYMMETRY)[person.points.parts])
    np.testing.assert_array_equal(once.coarse_segm, np.asarray(COARSE_PART_SYMMETRY)[segm[:, ::-1]])

    # Table lookups truncate to a 1/255 bin, so two flips land within one bin of the start.
    tables = FlipSymmetry(*uv_symmetry_tables())
    parts, u, v = tables.flip_points(*tables.flip_points(person.points.parts, person.points.u, person.points.v))
    np.testing.assert_array_equal(parts, person.points.parts)
    assert np.abs(u - person.points.u).max() <= 1 / 255 + 1e-6
    assert np.abs(v - person.points.v).max() <= 1 / 255 + 1e-6


def test_official_symmetry_file_is_read_with_matlab_cell_layout(tmp_path):
    u_tables, v_tables = uv_symmetry_tables()
    symmetry = load_flip_symmetry(uv_tables_file(tmp_path))
    np.testing.assert_array_equal(symmetry.u_tables, u_tables)
    # torso (part 2) at U=0.3, V=0.2: table cell [int(0.2*255), int(0.3*255)] = [51, 76]
    parts, u, v = symmetry.flip_points(np.array([2]), np.array([0.3], np.float32), np.array([0.2], np.float32))
    assert parts[0] == 2 and u[0] == pytest.approx(u_tables[1, 51, 76]) and v[0] == pytest.approx(v_tables[1, 51, 76])
    with pytest.raises(DensePoseError):
        load_flip_symmetry(tmp_path / "missing.mat")


class _AlwaysFlip:
    """An rng stand-in: picks the first size and always flips."""

    def integers(self, n):
        return 0

    def random(self):
        return 0.0


def test_resize_and_flip_keep_image_boxes_points_and_masks_consistent():
    # A 60 x 40 image with a red 4x4 block at the pixel of the person's single point.
    height, width = 40, 60
    image = np.zeros((height, width, 3), np.uint8)
    image[22:26, 13:17] = (0, 0, 255)  # BGR red, centre (15, 24)
    box = [10.0, 4.0, 30.0, 36.0]  # XYXY, 20 x 32
    dp_x, dp_y = (15.0 - 10.0) * 256 / 20, (24.0 - 4.0) * 256 / 32
    segm = np.zeros((256, 256), bool)
    segm[:, :64] = True  # left quarter of the box is coarse part 2 (right hand)
    masks = [[]] + [_rle(segm)] + [[]] * 12
    person = _person(box, [dp_x], [dp_y], [3], [0.4], [0.7], masks)
    augmentation = Augmentation(short_sides=(80,), max_side=1000, flip=True, symmetry=FlipSymmetry())
    sample = map_sample(image[:, :, :], (person,), augmentation, _AlwaysFlip())

    assert sample.image.shape == (3, 80, 120)  # short side 40 -> 80
    new_box = sample.boxes[0]
    np.testing.assert_allclose(new_box, [120 - 60, 8, 120 - 20, 72], atol=1e-4)  # x2 scale, x mirrored
    dp = sample.densepose[0]
    # The point, mapped through the new box as the loss maps it, lands on the moved red block.
    x_img = new_box[0] + dp.x[0] * (new_box[2] - new_box[0]) / 256
    y_img = new_box[1] + dp.y[0] * (new_box[3] - new_box[1]) / 256
    assert sample.image[2, int(y_img), int(x_img)] > 200 and sample.image[0, int(y_img), int(x_img)] < 50
    assert (dp.parts[0], dp.u[0], dp.v[0]) == (4, pytest.approx(0.4), pytest.approx(0.7))  # right hand -> left hand
    # The mask's part moved to the right quarter of the box and became the left hand (3).
    assert dp.coarse_segm[:, 192:].min() == 3 and dp.coarse_segm[:, :192].max() == 0


def test_crowd_people_and_empty_boxes_are_dropped():
    crowd = PersonAnnotation(np.array([0, 0, 5, 5.0]), True, None)
    outside = PersonAnnotation(np.array([70, 0, 80, 5.0]), False, None)  # right of the 60 px image
    kept = PersonAnnotation(np.array([1, 1, 9, 9.0]), False, None)
    augmentation = Augmentation((40,), 100, False, FlipSymmetry())
    sample = map_sample(np.zeros((40, 60, 3), np.uint8), (crowd, outside, kept), augmentation, np.random.default_rng(0))
    np.testing.assert_allclose(sample.boxes, [[1, 1, 9, 9]])
    assert sample.densepose == [None]


def test_stream_sampler_splits_the_global_batch_and_resumes():
    single = iter(StreamBatchSampler(10, 4, seed=3))
    batches = [next(single) for _ in range(5)]
    positions = [p for batch in batches for p, _ in batch]
    assert positions == list(range(20))
    first_epoch = sorted([i for b in batches[:2] for _, i in b] + [i for _, i in batches[2][:2]])
    assert first_epoch == list(range(10))  # each epoch is a permutation
    ranks = [iter(StreamBatchSampler(10, 4, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    for batch in batches:
        assert next(ranks[0]) + next(ranks[1]) == batch
    resumed = iter(StreamBatchSampler(10, 4, seed=3, start_iteration=3))
    assert next(resumed) == batches[3]
    with pytest.raises(DensePoseError):
        StreamBatchSampler(10, 3, seed=0, world_size=2)


def test_loader_workers_give_the_same_samples_as_the_main_process(tiny_synthetic_set):
    from densepose_torch.training.config import DatasetConfig
    from densepose_torch.training.datasets import training_source

    source = training_source((DatasetConfig(annotations=str(tiny_synthetic_set / "annotations.json"), images=str(tiny_synthetic_set / "images")),))
    dataset = TrainingDataset(source, len(source), Augmentation((64, 96), 160, True, FlipSymmetry()), seed=5)
    results = []
    for workers in (0, 1):
        loader = build_train_loader(dataset, StreamBatchSampler(len(source), 2, seed=5), workers)
        results.append([next(loader) for _ in range(2)])
    for batch_a, batch_b in zip(*results):
        for a, b in zip(batch_a, batch_b):
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.boxes, b.boxes)
            assert a.seed == b.seed
    sizes = {s.image.shape[1] for batch in results[0] for s in batch}
    assert sizes <= {64, 96}


def test_synthetic_source_matches_the_written_dataset(tiny_synthetic_set):
    """Rendering on the fly gives the scenes `densepose synth` writes (same seeds)."""
    from densepose_torch.data.loader import SyntheticSource

    config = json.loads((tiny_synthetic_set / "synth_config.json").read_text())
    source = SyntheticSource(config["size"], config["seed"], 2, config["num_points"])
    bgr, persons = source(1)
    written = np.asarray(Image.open(tiny_synthetic_set / "images" / "000001.jpg"))[:, :, ::-1]
    # JPEG (quality 95) against raw pixels: mean absolute difference of a few grey levels.
    assert np.abs(bgr.astype(np.int16) - written.astype(np.int16)).mean() < 4
    annotations = json.loads((tiny_synthetic_set / "annotations.json").read_text())["annotations"]
    boxes = [a["bbox"] for a in annotations if a["image_id"] == 2]
    np.testing.assert_allclose([p.box for p in persons], [[x, y, x + w, y + h] for x, y, w, h in boxes])
