"""Videos: synthetic clips with dense truth, people tracked across frames, temporal smoothing,
and the flicker figures of evaluation.temporal."""
from __future__ import annotations

import json

import numpy as np
import pytest

from densepose_torch.evaluation.temporal import (
    FlickerCounts,
    corresponding_pixels,
    identity_switches,
    track_of_people,
)
from densepose_torch.results import ChartResult, DenseMaps, DensePoseResult
from densepose_torch.synthetic import SceneGenerator
from densepose_torch.synthetic.clips import ClipRenderer
from densepose_torch.synthetic.dataset import SynthJob, read_dense, write_clips
from densepose_torch.video import Tracker, TrackerConfig
from densepose_torch.video.clip import ClipSpec, crop_square, main_track_boxes, plan_crop, resample_indices
from densepose_torch.video.smoothing import TemporalSmoother


# -- synthetic clips ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generator():
    return SceneGenerator(96)


def test_clip_frames_are_a_function_of_seed_and_time(generator):
    clip = ClipRenderer(generator, (3, 1))
    again = ClipRenderer(generator, (3, 1))
    for index in (7, 0):  # any order
        a, b = clip.frame(index), again.frame(index)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.I, b.I) and np.array_equal(a.U, b.U)
    assert not np.array_equal(clip.frame(0).image, clip.frame(7).image), "people and camera move"
    assert not np.array_equal(clip.frame(0).image, ClipRenderer(generator, (3, 2)).frame(0).image)


def test_clip_people_keep_their_instance_and_move_smoothly(generator):
    clip = ClipRenderer(generator, (5, 0))
    frames = [clip.frame(index) for index in range(0, 12)]
    people = len(clip.actors)
    assert all(frame.num_persons == people for frame in frames), "every person listed in every frame"
    for k in range(1, people + 1):
        centres = [np.argwhere(frame.instance == k).mean(axis=0) for frame in frames if (frame.instance == k).sum() > 30]
        steps = [np.linalg.norm(b - a) for a, b in zip(centres, centres[1:])]
        # at 25 fps a person's visible centre moves a few pixels per frame, never jumps across the image
        assert not steps or max(steps) < 0.15 * 96, steps


def test_write_clips_layout_resume_and_video(tmp_path):
    job = SynthJob(out=tmp_path / "clips", seed=2, size=64, num_points=10)
    summary = write_clips(job, count=2, frames=4, progress=False)
    assert summary["clips"] == 2 and summary["rendered"] == 8
    for clip in range(2):
        folder = tmp_path / "clips" / f"clip_{clip:04d}"
        dataset = json.loads((folder / "annotations.json").read_text())
        assert dataset["info"]["clip"] == clip and dataset["info"]["fps"] == 25.0
        assert [image["file_name"] for image in dataset["images"]] == [f"{i:06d}.jpg" for i in range(4)]
        truth = read_dense(folder / "dense" / "000003.npz")
        assert truth.I.shape == (64, 64)
        for annotation in dataset["annotations"]:  # instance_id is the person's track
            frame = read_dense(folder / "dense" / f"{annotation['image_id'] - 1:06d}.npz")
            assert (frame.instance == annotation["instance_id"]).sum() == annotation["area"]
    videos = summary["videos"]
    assert [v.stem for v in videos] == ["clip_0000", "clip_0001"] and all(v.is_file() for v in videos)
    before = videos[0].stat().st_mtime_ns
    again = write_clips(job, count=2, frames=4, progress=False)
    assert again["rendered"] == 0 and videos[0].stat().st_mtime_ns == before, "a finished clip is not redone"


# -- tracking ----------------------------------------------------------------------------------
def person(x0: float, y0: float, part: int, size: int = 20) -> tuple[list[float], ChartResult]:
    labels = np.full((size, size), part, np.uint8)
    uv = np.zeros((2, size, size), np.float32)
    return [x0, y0, x0 + size, y0 + size], ChartResult(int(x0), int(y0), labels, uv)


def result_of(people, scores=None, size=(80, 120)) -> DensePoseResult:
    boxes = np.array([box for box, _ in people], np.float32).reshape(-1, 4)
    scores = np.array(scores if scores is not None else [0.9] * len(people), np.float32)
    return DensePoseResult(size, boxes, scores, [chart for _, chart in people])


def frame_with_colours(people_colours, size=(80, 120)) -> np.ndarray:
    image = np.full((*size, 3), 128, np.uint8)
    for (box, _), colour in people_colours:
        x0, y0, x1, y1 = (int(v) for v in box)
        image[y0:y1, x0:x1] = colour
    return image


def test_tracks_follow_people_whatever_the_score_order():
    tracker = Tracker()
    seen = []
    for t in range(8):
        a, b = person(10 + 3 * t, 20, 2), person(80 - 3 * t, 40, 15)
        order = [a, b] if t % 2 == 0 else [b, a]  # the detector ranks them differently each frame
        image = frame_with_colours([(a, (200, 0, 0)), (b, (0, 0, 200))])
        result = tracker.update(image, result_of(order))
        ids = dict(zip([chart.labels[0, 0] for chart in result.charts], result.track_ids))
        seen.append((ids[2], ids[15]))
    assert set(seen) == {(1, 2)}


def test_a_person_missed_for_a_few_frames_keeps_their_id_and_a_long_absence_gets_a_new_one():
    tracker = Tracker(TrackerConfig(max_missed=3))
    image = np.full((80, 120, 3), 100, np.uint8)
    ids = []
    for t in range(14):
        present = t not in (3, 4, 5) and t < 8 or t >= 13  # missed 3 frames; then gone 5 frames
        result = tracker.update(image, result_of([person(10 + 2 * t, 20, 2)] if present else []))
        ids.append(list(result.track_ids))
    assert ids[2] == ids[6] == [1], "back within max_missed frames, where it was heading"
    assert ids[3] == [] and ids[13] == [2], "gone longer than max_missed: a new id"


def test_a_person_walking_out_of_the_picture_keeps_their_id_as_their_box_shrinks():
    # The boxes the default model gave a person leaving a held-out clip on the left (frames 8-14 of
    # clip 12 of seed 424242): the box shrinks from one side, then jumps from the body to the torso.
    boxes = [[0, 43, 133, 321], [3, 54, 135, 312], [14, 81, 109, 297], [0, 190, 93, 255], [0, 183, 74, 242],
             [1, 185, 61, 236], [0, 189, 42, 251]]
    tracker = Tracker()
    image = np.full((512, 512, 3), 90, np.uint8)
    ids = []
    for box in boxes:
        x0, y0, x1, y1 = box
        chart = ChartResult(x0, y0, np.full((y1 - y0, x1 - x0), 2, np.uint8), np.zeros((2, y1 - y0, x1 - x0), np.float32))
        ids += list(tracker.update(image, DensePoseResult((512, 512), np.array([box], np.float32), np.array([0.9], np.float32), [chart])).track_ids)
    # Carried on by its velocity, the box of the fourth frame would be a sliver overlapping nothing.
    assert ids == [1] * len(boxes)


def test_appearance_keeps_two_crossing_people_apart():
    tracker = Tracker()
    history = []
    for t in range(9):
        # Two people walk through each other (their boxes overlap for several frames) in different clothes.
        a, b = person(20 + 6 * t, 30, 2), person(68 - 6 * t, 30, 2)
        image = frame_with_colours([(a, (220, 30, 30)), (b, (30, 30, 220))])
        result = tracker.update(image, result_of([a, b]))
        history.append(list(result.track_ids))
    assert all(ids == [1, 2] for ids in history), history


# -- flicker figures ---------------------------------------------------------------------------
def maps(I, U=None, V=None, instance=None) -> DenseMaps:  # noqa: E741 - DensePose's name for the part map
    I = np.asarray(I, np.uint8)  # noqa: E741
    U = np.asarray(U if U is not None else np.tile(np.linspace(0, 1, I.shape[1]), (I.shape[0], 1)), np.float32)
    V = np.asarray(V if V is not None else np.tile(np.linspace(0, 1, I.shape[0])[:, None], (1, I.shape[1])), np.float32)
    instance = np.asarray(instance if instance is not None else (I > 0), np.uint16)
    return DenseMaps(I=I, U=U * (I > 0), V=V * (I > 0), instance=instance)


def test_flicker_counts_follow_the_true_motion():
    part = np.zeros((10, 30), np.uint8)
    part[2:8, 5:15] = 3
    before = maps(part)
    moved = maps(np.roll(part, 4, axis=1), np.roll(before.U, 4, axis=1), np.roll(before.V, 4, axis=1))
    pairs = corresponding_pixels(before, moved)
    assert len(pairs.after) == 60 and np.array_equal(pairs.after, pairs.before + 4), "each point found where it moved"
    steady = FlickerCounts()
    steady.add(pairs, before, moved, before, moved)  # a prediction that follows the truth
    assert steady.rate == 0.0 and steady.jitter == pytest.approx(0.0, abs=1e-7)
    flipped = moved.I.copy()
    flipped[2:5, 9:19] = 7  # 30 of the 60 pixels change part for a frame
    blip = FlickerCounts()
    blip.add(pairs, before, moved, before, DenseMaps(flipped, moved.U, moved.V, moved.instance))
    assert blip.rate == pytest.approx(0.5)


def test_identity_switches_count_changes_of_a_persons_id():
    truth = maps(np.pad(np.full((4, 4), 2, np.uint8), 2))
    predicted = DenseMaps(truth.I, truth.U, truth.V, (truth.I > 0).astype(np.uint16) * 7)
    assert track_of_people(predicted, truth) == {1: 7}
    duplicate = predicted.instance.copy()
    duplicate[2:4, 2:6] = 9  # a second detection on a quarter of the person does not take them over
    assert track_of_people(DenseMaps(truth.I, truth.U, truth.V, duplicate), truth) == {1: 7}
    assert identity_switches([{1: 7}, {}, {1: 7}, {1: 9}, {1: 9, 2: 4}]) == 1


# -- temporal smoothing ------------------------------------------------------------------------
def textured(shift: int, size=(64, 96)) -> np.ndarray:
    """A random texture (optical flow needs one) moved `shift` pixels to the right."""
    texture = np.random.default_rng(0).integers(0, 256, (size[0], size[1] + 40, 3), np.uint8)
    texture = np.repeat(np.repeat(texture[:, ::2], 2, axis=1), 1, axis=0)[:, : size[1] + 40]
    return np.ascontiguousarray(texture[:, 40 - shift : 40 - shift + size[1]])


def moving_person(t: int, blip: bool) -> DensePoseResult:
    """A 30x20 person moving right 2 px per frame with the texture: part 2 above part 9; `blip`
    swaps the upper half to part 3 for this frame."""
    x0 = 20 + 2 * t
    labels = np.full((30, 20), 9, np.uint8)
    labels[:15] = 3 if blip else 2
    uv = np.stack([np.full((30, 20), 0.5, np.float32), np.tile(np.linspace(0.1, 0.9, 30, dtype=np.float32)[:, None], (1, 20))])
    chart = ChartResult(x0, 10, labels, uv)
    return DensePoseResult((64, 96), np.array([[x0, 10, x0 + 20, 40]], np.float32), np.array([0.9], np.float32), [chart],
                           track_ids=np.array([1]))


@pytest.mark.parametrize("mode", ["centred", "causal"])
def test_smoothing_removes_a_one_frame_blip_and_keeps_a_moving_person_in_place(mode):
    smoother = TemporalSmoother(mode)
    out = []
    for t in range(10):
        out += smoother.push(textured(2 * t), moving_person(t, blip=t == 6))
    out += smoother.flush()
    assert len(out) == 10, "every frame comes out, in order"
    for t, (_, result) in enumerate(out):
        chart = result.charts[0]
        # centred boxes are exact for steady motion; the causal filter starts at rest and catches up
        assert abs(result.boxes[0, 0] - (20 + 2 * t)) <= (0.01 if mode == "centred" else 1.5)
        truth = moving_person(t, blip=False).to_dense().I
        agree = (result.to_dense().I == truth)[truth > 0].mean()
        assert agree >= 0.9, f"frame {t}: {agree:.2%} of the person keeps its parts"
        if t == 6:
            assert (chart.labels == 3).mean() < 0.05, "the blip is voted away"


def test_smoothing_needs_tracks_and_a_known_mode():
    with pytest.raises(ValueError, match="mode"):
        TemporalSmoother("gaussian")
    with pytest.raises(ValueError, match="tracked"):
        TemporalSmoother().push(textured(0), DensePoseResult((64, 96), np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))


def test_track_ids_are_the_instances_of_the_written_files(tmp_path):
    from densepose_torch.io.coco_results import result_to_records
    from densepose_torch.io.npz import read_npz, write_npz

    result = result_of([person(10, 20, 2), person(60, 30, 15)])
    tracked = DensePoseResult(result.image_size, result.boxes, result.scores, result.charts, track_ids=np.array([7, 3]))
    dense = tracked.to_dense()
    assert set(np.unique(dense.instance)) == {0, 3, 7} and dense.instance[25, 15] == 7 and dense.instance[35, 65] == 3
    again = read_npz(write_npz(tmp_path / "frame.npz", tracked))
    assert list(again.track_ids) == [7, 3] and np.array_equal(again.to_dense().instance, dense.instance)
    assert [record["track_id"] for record in result_to_records(tracked, 1)] == [7, 3]
    assert list(tracked.select([1]).track_ids) == [3]
    assert "track_id" not in result_to_records(result, 1)[0], "still images have no tracks"


# -- animation-ready clips ---------------------------------------------------------------------
def test_resampling_keeps_the_duration_and_takes_the_nearest_frame():
    assert resample_indices(30, 25.0, 25.0).tolist() == list(range(30))
    from_30 = resample_indices(30, 30.0, 25.0)  # one second
    assert len(from_30) == 25 and len(set(from_30.tolist())) == 25 and from_30[-1] <= 29
    assert sorted(set(range(30)) - set(from_30.tolist())) == [3, 9, 15, 21, 27]  # every sixth frame goes
    from_24 = resample_indices(48, 24.0, 25.0)
    assert len(from_24) == 50 and np.all(np.diff(from_24) >= 0) and len(set(from_24.tolist())) == 48
    assert np.abs(from_24 / 24.0 - np.arange(50) / 25.0).max() <= 0.5 / 24 + 1e-9  # within half a source frame
    assert resample_indices(0, 30.0, 25.0).size == 0


def test_the_crop_follows_a_walking_person_smoothly_and_keeps_them_whole():
    rng = np.random.default_rng(3)
    frames = 100
    left = np.linspace(50, 1300, frames)  # walks 12.6 px a frame across a 1920x1080 frame
    truth = np.stack([left, np.full(frames, 300.0), left + 200, np.full(frames, 900.0)], axis=1)
    detected = truth + rng.normal(0, 8, truth.shape)  # a detector's jitter
    detected[40:46] = np.nan  # missed for six frames
    window = plan_crop(detected, (1080, 1920), 25.0, ClipSpec())
    assert (window[:, 2] == window[0, 2]).all() and 600 * 1.2 <= window[0, 2] <= 620 * 1.2  # one side: 1.2 x the height
    steps = np.abs(np.diff(window[:, 0]))
    assert steps.max() <= 16  # never a jump: at most the walking speed and a little
    assert np.abs(np.diff(window[:, 0], 2)).max() <= 3  # and no jitter: speed changes by a few pixels at most
    inside = (window[:, 0] <= truth[:, 0] + 2) & (window[:, 0] + window[:, 2] >= truth[:, 2] - 2)
    assert inside[5:-5].all()  # whole in every frame (at the ends, the square stops at the frame's edge)
    assert (window[:, 0] >= 0).all() and (window[:, 0] + window[:, 2] <= 1920).all() and (window[:, 1] >= 0).all()


def test_the_crop_of_nobody_is_the_centre_and_a_tall_person_is_padded():
    nobody = plan_crop(np.full((5, 4), np.nan), (480, 640), 25.0, ClipSpec())
    assert nobody.tolist() == [[80, 0, 480]] * 5
    tall = plan_crop(np.array([[100.0, 0.0, 300.0, 640.0]] * 3), (640, 480), 25.0, ClipSpec())
    assert tall[0].tolist() == [-80, 0, 640]  # taller than the frame is wide: the square is the height, padded at the sides
    picture = np.full((640, 480, 3), 200, np.uint8)
    square = crop_square(picture, tall[0], 320)
    assert square.shape == (320, 320, 3) and square[:, :40].max() == 0 and square[:, 40:280].min() == 200 and square[:, 280:].max() == 0


def test_the_main_person_is_the_one_seen_largest_longest():
    big_once = {1: np.array([0.0, 0.0, 100.0, 100.0])}
    small = {2: np.array([0.0, 0.0, 40.0, 40.0])}
    frames = [{**big_once, **small}] + [dict(small) for _ in range(9)]  # 10 000 px once vs 1 600 px ten times
    path = main_track_boxes(frames)
    assert np.allclose(path[:, 2], 40.0)
    assert np.isnan(main_track_boxes([{}, {}])).all()
