"""`densepose predict` end to end in a temporary folder, with a fake predictor that returns
hand-made DensePoseResults (the model itself is tested elsewhere; one test below runs a real,
tiny, randomly initialised model)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from densepose_torch.cli import main
from densepose_torch.config import ModelConfig
from densepose_torch.errors import DensePoseError
from densepose_torch.io.coco_results import load_results
from densepose_torch.io.iuv_png import read_inds_png, read_iuv_png
from densepose_torch.io.npz import read_npz
from densepose_torch.io.output_folder import RUN_RECORD
from densepose_torch.io.video import probe_video, read_frames
from densepose_torch.jobs import predict as predict_job
from densepose_torch.results import ChartResult, DensePoseResult

PART_OF_FIRST, PART_OF_SECOND = 5, 20


def fake_result(image: np.ndarray) -> DensePoseResult:
    """Two people: a confident one (0.95, part 5) on the left half, an unsure one (0.5, part 20)
    on the right, each box 2 pixels inside its half."""
    height, width = image.shape[:2]
    boxes, charts = [], []
    for index, (left, part) in enumerate(((0, PART_OF_FIRST), (width // 2, PART_OF_SECOND))):
        x0, y0, x1, y1 = left + 2.0, 2.0, left + width // 2 - 2.0, height - 2.0
        h, w = int(y1 - y0), int(x1 - x0)
        labels = np.full((h, w), part, np.uint8)
        u = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
        v = np.tile(np.linspace(0, 1, h, dtype=np.float32)[:, None], (1, w))
        boxes.append([x0, y0, x1, y1])
        charts.append(ChartResult(int(x0), int(y0), labels, np.stack([u, v])))
    return DensePoseResult((height, width), np.array(boxes, np.float32), np.array([0.95, 0.5], np.float32), charts)


class FakePredictor:
    """Keeps detections as Predictor does: scores above `min_score`, the best one with `top_person`.
    Its model says its charts are the synthetic body's, so that what a job writes for a frame
    without a result can be told from the default."""

    config = ModelConfig(chart_body="synthetic")

    def __init__(self, interrupt_on_call: int | None = None, min_score: float | None = None, top_person: bool = False):
        self.batch_sizes: list[int] = []
        self.image_sizes: list[tuple[int, int]] = []
        self.interrupt_on_call = interrupt_on_call
        self.min_score, self.top_person = min_score, top_person

    def batch(self, images):
        if self.interrupt_on_call is not None and len(self.batch_sizes) + 1 == self.interrupt_on_call:
            raise KeyboardInterrupt
        self.batch_sizes.append(len(images))
        self.image_sizes.extend(image.shape[:2] for image in images)
        results = [fake_result(image) for image in images]
        results = [result.select(result.scores > (self.min_score or 0.05)) for result in results]
        return [result.select([0]) if self.top_person and len(result) else result for result in results]


@pytest.fixture
def fake(monkeypatch):
    predictor = FakePredictor()
    loaded, choices = [], []

    def build(model, device, precision, min_score, top_person):
        loaded.append((model.name, device, precision, min_score, top_person))
        choices.append(model)
        predictor.min_score, predictor.top_person = min_score, top_person
        return predictor

    monkeypatch.setattr(predict_job, "build_predictor", build)
    predictor.loaded, predictor.choices = loaded, choices
    return predictor


def run_cli(*argv) -> int:
    """`densepose predict ...` as the console script runs it (errors become a message and an exit code)."""
    return main(["predict", *[str(a) for a in argv]])


def photo(height=40, width=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def write_photos(folder, names, height=40, width=60):
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        cv2.imwrite(str(folder / name), photo(height, width, index))
    return folder


def files_under(folder):
    """The outputs under `folder`, without the run record every run leaves."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != RUN_RECORD)


def no_temporary_files(folder):
    return not [p for p in folder.rglob(".*") if p.name != RUN_RECORD]


def test_folder_to_all_outputs_keeps_stems(tmp_path, fake, capsys):
    photos = write_photos(tmp_path / "image", ["00002_00.jpg", "00001_00.png"])
    out = tmp_path / "out"
    assert run_cli(photos, "-o", out, "--outputs", "npz,iuv,json", "--render", "viton,segm") == 0
    assert files_under(out) == [
        "iuv/00001_00_INDS.png", "iuv/00001_00_IUV.png", "iuv/00002_00_INDS.png", "iuv/00002_00_IUV.png",
        "json/00001_00.json", "json/00002_00.json", "npz/00001_00.npz", "npz/00002_00.npz",
        "segm/00001_00.png", "segm/00002_00.png", "viton/00001_00.png", "viton/00002_00.png",
    ]
    # No --model: the embedded default model; --min-score 0.8 (default) goes to the predictor,
    # which keeps only the 0.95 person.
    assert fake.loaded == [(None, None, "exact", 0.8, False)]
    result = read_npz(out / "npz/00001_00.npz")
    assert len(result) == 1 and result.scores[0] == pytest.approx(0.95)
    part, u, v = read_iuv_png(out / "iuv/00001_00_IUV.png")
    assert set(np.unique(part)) == {0, PART_OF_FIRST}
    assert set(np.unique(read_inds_png(out / "iuv/00001_00_INDS.png"))) == {0, 1}
    records = load_results(out / "json/00001_00.json")
    assert len(records) == 1 and records[0]["image_id"] == 0 and records[0]["file_name"] == "00001_00.png"
    viton = cv2.imread(str(out / "viton/00001_00.png"))[:, :, ::-1]
    assert viton.shape == (40, 60, 3)
    part5 = cv2.applyColorMap(np.array([[int(5 * 255 // 24)]], np.uint8), cv2.COLORMAP_PARULA)[0, 0, ::-1]
    assert tuple(viton[10, 10]) == tuple(part5) and tuple(viton[10, 40]) == (0, 0, 0)
    assert "2 of 2 inputs done" in capsys.readouterr().err
    assert no_temporary_files(out)


def test_viton_layout_writes_stem_jpg_like_the_datasets(tmp_path, fake):
    photos = write_photos(tmp_path / "image", ["00001_00.jpg", "00002_00.jpg"])
    out = tmp_path / "image-densepose"
    assert run_cli(photos, "-o", out, "--render", "viton", "--layout", "viton") == 0
    assert files_under(out) == ["00001_00.jpg", "00002_00.jpg"]
    assert cv2.imread(str(out / "00001_00.jpg")).shape == (40, 60, 3)
    assert run_cli(photos, "-o", tmp_path / "x", "--render", "viton,segm", "--layout", "viton") == 1


def test_beside_layout_and_min_score_and_top_person(tmp_path, fake):
    write_photos(tmp_path, ["shot.png"])
    out = tmp_path / "out"
    assert run_cli(tmp_path / "shot.png", "-o", out, "--layout", "beside", "--outputs", "npz,iuv", "--render", "u",
                   "--min-score", "0") == 0
    assert files_under(out) == ["shot.npz", "shot_INDS.png", "shot_IUV.png", "shot_u.png"]
    assert len(read_npz(out / "shot.npz")) == 2
    assert run_cli(tmp_path / "shot.png", "-o", out, "--layout", "beside", "--min-score", "0", "--top-person", "--overwrite") == 0
    assert len(read_npz(out / "shot.npz")) == 1
    assert fake.loaded[-1][3:] == (0.0, True)


def test_recursive_keeps_sub_folders_and_globs_take_file_names(tmp_path, fake, monkeypatch):
    write_photos(tmp_path / "shoot", ["a.jpg"])
    write_photos(tmp_path / "shoot" / "day2", ["b.jpg"])
    assert run_cli(tmp_path / "shoot", "-o", tmp_path / "flat") == 0
    assert files_under(tmp_path / "flat") == ["npz/a.npz"]
    assert run_cli(tmp_path / "shoot", "-o", tmp_path / "tree", "--recursive") == 0
    assert files_under(tmp_path / "tree") == ["npz/a.npz", "npz/day2/b.npz"]
    monkeypatch.chdir(tmp_path)
    assert run_cli("shoot/**/*.jpg", "-o", "globbed") == 0
    assert files_under(tmp_path / "globbed") == ["npz/a.npz", "npz/b.npz"]


def test_rerun_skips_finished_outputs_and_overwrite_redoes_them(tmp_path, fake):
    photos = write_photos(tmp_path / "image", ["a.jpg", "b.jpg"])
    out = tmp_path / "out"
    assert run_cli(photos, "-o", out, "--render", "segm") == 0
    assert fake.batch_sizes == [1, 1]
    stamp = (out / "segm/a.png").stat().st_mtime_ns
    (out / "segm/b.png").unlink()
    assert run_cli(photos, "-o", out, "--render", "segm") == 0
    assert fake.batch_sizes == [1, 1, 1]  # only b again
    assert (out / "segm/a.png").stat().st_mtime_ns == stamp
    assert run_cli(photos, "-o", out, "--render", "segm") == 0
    assert fake.batch_sizes == [1, 1, 1] and len(fake.loaded) == 2  # nothing to do: no model loaded
    assert run_cli(photos, "-o", out, "--render", "segm", "--overwrite") == 0
    assert fake.batch_sizes == [1, 1, 1, 1, 1]


def test_batch_size_groups_images(tmp_path, fake):
    photos = write_photos(tmp_path / "image", [f"{i}.png" for i in range(5)])
    assert run_cli(photos, "-o", tmp_path / "out", "--batch-size", "2") == 0
    assert fake.batch_sizes == [2, 2, 1]


def test_a_corrupt_file_is_reported_skipped_and_fails_the_run(tmp_path, fake, capsys):
    photos = write_photos(tmp_path / "image", ["a.jpg", "c.jpg"])
    (photos / "b.jpg").write_bytes(b"this is no jpeg")
    assert run_cli(photos, "-o", tmp_path / "out", "--batch-size", "3") == 1
    assert files_under(tmp_path / "out") == ["npz/a.npz", "npz/c.npz"]
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "b.jpg" in skipped[0]
    assert "1 failed" in err


def test_ctrl_c_leaves_only_whole_files_and_a_rerun_finishes(tmp_path, monkeypatch):
    photos = write_photos(tmp_path / "image", ["a.jpg", "b.jpg", "c.jpg"])
    out = tmp_path / "out"
    interrupted = FakePredictor(interrupt_on_call=2)
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: interrupted)
    assert run_cli(photos, "-o", out, "--outputs", "npz,iuv", "--render", "viton") == 130  # Ctrl-C: the exit code of SIGINT, no traceback
    assert files_under(out) == ["iuv/a_INDS.png", "iuv/a_IUV.png", "npz/a.npz", "viton/a.png"]
    assert no_temporary_files(out)
    again = FakePredictor()
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: again)
    assert run_cli(photos, "-o", out, "--outputs", "npz,iuv", "--render", "viton") == 0
    assert again.batch_sizes == [1, 1]
    assert len(files_under(out)) == 12


def test_an_interrupt_inside_a_writer_removes_its_temporary_file(tmp_path, fake, monkeypatch):
    photos = write_photos(tmp_path / "image", ["a.jpg"])

    def interrupted_imwrite(path, *args):
        with open(path, "wb") as handle:
            handle.write(b"half a png")
        raise KeyboardInterrupt

    monkeypatch.setattr(cv2, "imwrite", interrupted_imwrite)
    assert run_cli(photos, "-o", tmp_path / "out", "--render", "segm") == 130  # Ctrl-C: the exit code of SIGINT, no traceback
    assert files_under(tmp_path / "out") == []


def write_clip(path, count=6, fps=12.0, height=48, width=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for index in range(count):
        writer.write(np.full((height, width, 3), 20 * index, np.uint8))
    writer.release()
    return path


def test_video_render_keeps_rate_and_frames_plus_per_frame_arrays(tmp_path, fake):
    clip = write_clip(tmp_path / "dance.mp4")
    out = tmp_path / "out"
    assert run_cli(clip, "-o", out, "--render", "magicanimate", "--outputs", "npz", "--batch-size", "4") == 0
    rendered = [p for p in (out / "magicanimate").iterdir()]
    assert len(rendered) == 1 and rendered[0].stem == "dance"
    info = probe_video(rendered[0])
    assert info.fps == pytest.approx(12.0, abs=0.01) and (info.width, info.height) == (64, 48)
    pictures = list(read_frames(rendered[0]))
    assert len(pictures) == 6
    # Lossy video: the MagicAnimate background (68, 1, 84) comes back within 12 levels per channel.
    assert np.abs(pictures[0][1, 62].astype(int) - (68, 1, 84)).max() <= 12
    assert files_under(out / "npz") == [f"dance/{i:06d}.npz" for i in range(6)] + ["dance/video.json"]
    assert json.loads((out / "npz/dance/video.json").read_text()) == {"source": "dance.mp4", "frames": 6, "fps": 12.0, "temporal": "centred"}
    assert fake.batch_sizes == [4, 2]
    # The magicanimate render smoothed the video in time (its default); more outputs in the same
    # folder must be made the same way.
    assert run_cli(clip, "-o", out, "--outputs", "json") == 1
    json_run = run_cli(clip, "-o", out, "--outputs", "json", "--temporal", "centred")
    assert json_run == 0
    records = json.loads((out / "json/dance/000003.json").read_text())
    assert records[0]["image_id"] == 3 and records[0]["file_name"] == "dance.mp4"
    assert [record["track_id"] for record in records] == [1]  # the one person above 0.8, tracked from frame 0
    assert run_cli(clip, "-o", out, "--render", "magicanimate", "--outputs", "npz") == 0
    assert fake.batch_sizes == [4, 2, 1, 1, 1, 1, 1, 1]  # the json run; then nothing left to redo
    assert no_temporary_files(out)


def brightness_frames(count, height=48, width=64):
    """Flat frames 20 levels apart (frame k: 20 k + 10): each survives lossy coding recognisably."""
    return [np.full((height, width, 3), 20 * index + 10, np.uint8) for index in range(count)]


def write_video_input(folder, kind, pictures, fps=10.0):
    """`pictures` as an mp4 (MPEG-4 part 2), webm (VP9), gif, or folder of PNG frames; returns its path."""
    height, width = pictures[0].shape[:2]
    if kind == "folder":
        (folder / "frames").mkdir()
        for index, picture in enumerate(pictures):
            cv2.imwrite(str(folder / "frames" / f"frame_{index + 1}.png"), picture)  # frame_10 after frame_9
        return folder / "frames"
    if kind == "gif":
        from PIL import Image

        images = [Image.fromarray(picture) for picture in pictures]
        images[0].save(folder / "clip.gif", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)  # in 1/100 s
        return folder / "clip.gif"
    fourcc, extension = {"mp4": ("mp4v", ".mp4"), "webm": ("VP90", ".webm"), "avi": ("MJPG", ".avi")}[kind]
    writer = cv2.VideoWriter(str(folder / f"clip{extension}"), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    for picture in pictures:
        writer.write(picture[:, :, ::-1])
    writer.release()
    return folder / f"clip{extension}"


def frame_brightness(picture):
    return int(np.median(picture))


@pytest.mark.parametrize("kind", ["mp4", "webm", "gif", "folder"])
def test_every_frame_is_written_in_order_whatever_the_container(tmp_path, fake, kind):
    pictures = brightness_frames(11)
    source = write_video_input(tmp_path, kind, pictures)
    out = tmp_path / "out"
    extra = ["--folders-as-videos", "--fps", "10"] if kind == "folder" else []
    assert run_cli(source, "-o", out, "--render", "segm", "--outputs", "npz", *extra) == 0
    stem = source.stem if kind != "folder" else "frames"
    rendered = list(read_frames(out / "segm" / f"{stem}.mp4"))
    assert len(rendered) == 11 and len(fake.image_sizes) == 11
    assert files_under(out / "npz") == [f"{stem}/{i:06d}.npz" for i in range(11)] + [f"{stem}/video.json"]
    manifest = json.loads((out / "npz" / stem / "video.json").read_text())
    assert manifest["frames"] == 11 and manifest["fps"] == pytest.approx(10.0, abs=0.01)
    # The order is the input's: where nobody is (the right half: the fake's second person scores
    # below --min-score), the render shows the frame, 20 levels brighter each time.
    backgrounds = [frame_brightness(picture[:, -16:]) for picture in rendered]
    assert all(later - earlier > 10 for earlier, later in zip(backgrounds, backgrounds[1:]))


def destroy_jpeg_frame(path, index):
    """Overwrite the `index`th JPEG of an MJPEG file with zeros: that frame no longer decodes."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    end = data.index(b"\xff\xd9", starts[index]) + 2
    data[starts[index]:end] = bytes(end - starts[index])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["avi", "folder"])
def test_a_corrupt_frame_is_reported_and_written_empty_and_the_rest_follows(tmp_path, fake, capsys, kind):
    pictures = brightness_frames(8)
    source = write_video_input(tmp_path, kind, pictures)
    if kind == "avi":
        destroy_jpeg_frame(source, 3)
    else:
        (source / "frame_4.png").write_bytes(b"not a png at all")  # the fourth frame, index 3
    out = tmp_path / "out"
    extra = ["--folders-as-videos"] if kind == "folder" else []
    assert run_cli(source, "-o", out, "--render", "segm", "--outputs", "npz", *extra) == 1
    err = capsys.readouterr().err
    assert "frame 3 could not be" in err and "1 with frames that could not be read" in err
    stem = "clip" if kind == "avi" else "frames"
    assert [len(read_npz(out / "npz" / stem / f"{i:06d}.npz")) for i in range(8)] == [1, 1, 1, 0, 1, 1, 1, 1]
    assert read_npz(out / "npz" / stem / "000003.npz").chart_body == "synthetic"  # the model's body, even for an empty frame
    assert len(fake.image_sizes) == 7  # the model never saw the missing frame
    rendered = list(read_frames(out / "segm" / f"{stem}.mp4"))
    assert len(rendered) == 8
    assert frame_brightness(rendered[3][:, -16:]) < 10 < frame_brightness(rendered[4][:, -16:])  # black where the frame was lost
    manifest = json.loads((out / "npz" / stem / "video.json").read_text())
    assert manifest["frames"] == 8 and "frame 3" in manifest["problems"][0]


def test_a_frame_with_nobody_is_written_empty(tmp_path, fake):
    source = write_video_input(tmp_path, "mp4", brightness_frames(6))
    detect = fake.batch
    fake.batch = lambda images: [result if frame_brightness(image) > 60 else result.select([]) for image, result in zip(images, detect(images))]
    out = tmp_path / "out"
    assert run_cli(source, "-o", out, "--outputs", "npz,json") == 0
    assert [len(read_npz(out / "npz/clip" / f"{i:06d}.npz")) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert json.loads((out / "json/clip/000001.json").read_text()) == []


def test_clip_follows_the_person_at_its_own_size_and_rate_with_the_matching_source_video(tmp_path, fake):
    from densepose_torch.render import PRESETS
    from densepose_torch.video.clip import crop_square, resample_indices

    pictures = brightness_frames(12, height=60, width=80)
    source = write_video_input(tmp_path, "mp4", pictures, fps=30.0)
    out = tmp_path / "out"
    assert run_cli(source, "-o", out, "--clip", "magicanimate", "--clip-size", "64", "--outputs", "npz") == 0
    expected_sources = resample_indices(12, 30.0, 25.0)
    assert len(expected_sources) == 10  # 0.4 s at 25 fps
    clip = json.loads((out / "npz/clip/video.json").read_text())["clip"]
    assert clip["source_frames"] == expected_sources.tolist() and (clip["size"], clip["fps"]) == (64, 25.0)
    windows = np.array(clip["crop_xy_side"])
    assert (windows == windows[0]).all()  # the fake person stands still: so does the crop
    rendered = list(read_frames(out / "magicanimate/clip.mp4"))
    source_crops = list(read_frames(out / "rgb/clip.mp4"))
    assert probe_video(out / "rgb/clip.mp4").fps == pytest.approx(25.0, abs=0.01)
    assert len(rendered) == len(source_crops) == 10 and rendered[0].shape == source_crops[0].shape == (64, 64, 3)
    decoded = list(read_frames(source))  # what the run saw
    for index, source_index in enumerate(expected_sources):
        frame = decoded[source_index]
        expected_rgb = crop_square(frame, windows[index], 64)
        expected_render = crop_square(PRESETS["magicanimate"](frame, read_npz(out / f"npz/clip/{source_index:06d}.npz")), windows[index], 64)
        # Lossy H.264 / MPEG-4 coding of flat areas with sharp edges: 4 levels on average is ample
        # (the frames differ by 20 levels; a one-pixel shift of the render's edges costs ~15).
        assert np.abs(source_crops[index].astype(int) - expected_rgb.astype(int)).mean() < 4
        assert np.abs(rendered[index].astype(int) - expected_render.astype(int)).mean() < 4
    assert no_temporary_files(out)
    assert run_cli(source, "-o", out, "--clip", "magicanimate", "--clip-size", "64", "--outputs", "npz") == 0
    assert len(fake.image_sizes) == 12  # done: nothing redone


def test_idm_vton_sizes(tmp_path, fake):
    write_photos(tmp_path, ["person.jpg"], height=100, width=70)
    out = tmp_path / "out"
    assert run_cli(tmp_path / "person.jpg", "-o", out, "--render", "viton", "--layout", "viton", "--idm-vton") == 0
    assert fake.image_sizes == [(512, 384)]
    assert cv2.imread(str(out / "person.jpg")).shape == (1024, 768, 3)


def test_texture_with_a_user_atlas(tmp_path, fake):
    write_photos(tmp_path, ["p.png"])
    atlas = np.zeros((60, 40, 3), np.uint8)
    atlas[40:50, 0:10] = (0, 0, 255)  # BGR on disk: red tile for part 5 (column 0, row 4)
    cv2.imwrite(str(tmp_path / "atlas.png"), atlas)
    out = tmp_path / "out"
    assert run_cli(tmp_path / "p.png", "-o", out, "--render", "texture", "--texture-atlas", tmp_path / "atlas.png") == 0
    painted = cv2.imread(str(out / "texture/p.png"))
    assert tuple(painted[10, 10]) == (0, 0, 255)


def test_bad_arguments_are_one_line_errors(tmp_path, fake, capsys):
    assert run_cli(tmp_path / "missing.jpg", "-o", tmp_path / "out") == 1
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(tmp_path, "-o", tmp_path / "out", "--render", "rainbow")
    assert "unknown preset rainbow" in capsys.readouterr().err
    video = write_video_input(tmp_path, "mp4", brightness_frames(2))
    assert run_cli(video, "-o", tmp_path / "out", "--clip-size", "256") == 1
    assert "give --clip too" in capsys.readouterr().err
    assert run_cli(video, "-o", tmp_path / "out", "--clip", "magicanimate", "--idm-vton") == 1
    assert "does not combine" in capsys.readouterr().err
    for rate in ("inf", "nan", "0", "-25"):
        with pytest.raises(SystemExit):
            run_cli(video, "-o", tmp_path / "out", "--clip", "magicanimate", "--clip-fps", rate)
        assert "must be a positive number" in capsys.readouterr().err
    assert fake.image_sizes == []


def test_outputs_inside_the_input_folder_are_not_read_back(tmp_path, fake):
    photos = write_photos(tmp_path / "image", ["a.jpg"])
    assert run_cli(photos, "-o", photos / "out", "--render", "segm", "--recursive") == 0
    assert run_cli(photos, "-o", photos / "out", "--render", "segm", "--recursive") == 0
    assert files_under(photos / "out") == ["segm/a.png"]


def test_without_a_model_the_default_model_message_comes_through(tmp_path, capsys):
    write_photos(tmp_path, ["a.jpg"])
    code = run_cli(tmp_path / "a.jpg", "-o", tmp_path / "out", "--device", "cpu")
    try:
        from densepose_torch.checkpoint import load_default_model

        load_default_model()
    except DensePoseError as error:  # no embedded model yet: its how-to message, one line
        assert code == 1 and str(error) in capsys.readouterr().err
    else:
        assert code == 0


def test_real_tiny_model_end_to_end(tmp_path):
    import torch

    from densepose_torch.checkpoint import save_checkpoint
    from densepose_torch.config import ModelConfig
    from densepose_torch.modeling import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64,
                                    min_size_test=128, max_size_test=160))
    checkpoint = save_checkpoint(model, tmp_path / "tiny.pth")
    write_photos(tmp_path / "image", ["a.jpg"], height=96, width=128)
    out = tmp_path / "out"
    assert run_cli(tmp_path / "image", "-o", out, "--model", checkpoint, "--device", "cpu", "--min-score", "0",
                   "--outputs", "npz,iuv,json", "--render", "viton") == 0
    result = read_npz(out / "npz/a.npz")
    assert result.image_size == (96, 128)
    part, _, _ = read_iuv_png(out / "iuv/a_IUV.png")
    assert np.array_equal(part, result.to_dense().I)
    assert len(load_results(out / "json/a.json")) == len(result)
    assert cv2.imread(str(out / "viton/a.png")).shape == (96, 128, 3)
