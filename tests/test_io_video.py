"""Reading frames and writing rendered videos."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from densepose_torch.errors import DensePoseError
from densepose_torch.io.video import VideoEncoder, choose_encoder, probe_video, read_frames, video_writer

OPENCV_VP9 = VideoEncoder("opencv-vp9", ".webm", h264=False, browser_playable=True)


def frames(count=6, height=48, width=64):
    """Flat frames of distinct brightness: they survive lossy coding to within a few levels."""
    return [np.full((height, width, 3), (30 + 35 * i, 200 - 30 * i, 90), np.uint8) for i in range(count)]


def write_test_video(path, pictures, fps):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (pictures[0].shape[1], pictures[0].shape[0]))
    for picture in pictures:
        writer.write(picture[:, :, ::-1])
    writer.release()


def fourcc_of(path) -> str:
    capture = cv2.VideoCapture(str(path))
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    capture.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).lower()


def test_frames_come_in_order_as_rgb(tmp_path):
    path = tmp_path / "clip.mp4"
    write_test_video(path, frames(), 12.0)
    info = probe_video(path)
    assert (info.fps, info.frame_count, info.width, info.height) == (12.0, 6, 64, 48)
    read = list(read_frames(path))
    assert len(read) == 6
    for original, decoded in zip(frames(), read):
        # mp4v is lossy; flat frames come back within a few levels (6 is ample, colours differ by 30+)
        assert np.abs(decoded.astype(int) - original.astype(int)).max() <= 6


def test_gif_frames_and_rate(tmp_path):
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in frames(4)]
    pictures[0].save(tmp_path / "anim.gif", save_all=True, append_images=pictures[1:], duration=100, loop=0)  # GIF stores centiseconds
    assert probe_video(tmp_path / "anim.gif").fps == 10.0
    assert len(list(read_frames(tmp_path / "anim.gif"))) == 4


@pytest.mark.parametrize("encoder", ["best", "opencv-vp9"])
def test_written_video_has_the_frames_and_rate_and_even_size(tmp_path, encoder):
    chosen = choose_encoder() if encoder == "best" else OPENCV_VP9
    path = tmp_path / f"out{chosen.extension}"
    with video_writer(path, 12.0, chosen) as write:
        for frame in frames(5, 47, 63):  # odd sizes get a black row and column
            write(frame)
    info = probe_video(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(12.0, abs=0.01)
    decoded = list(read_frames(path))
    assert len(decoded) == 5
    # Lossy 4:2:0 coding of flat colours: within 8 levels away from the padded border.
    assert np.abs(decoded[3][:40, :56].astype(int) - frames(5)[3][:40, :56].astype(int)).max() <= 8
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_h264_when_imageio_ffmpeg_is_installed(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    encoder = choose_encoder()
    assert encoder.name == "libx264" and encoder.h264 and encoder.extension == ".mp4"
    path = tmp_path / "clip.mp4"
    with video_writer(path, 25.0, encoder) as write:
        for frame in frames(3):
            write(frame)
    assert fourcc_of(path) in ("avc1", "h264")


def test_interrupted_writing_leaves_no_file(tmp_path):
    encoder = choose_encoder()
    path = tmp_path / f"cut{encoder.extension}"
    with pytest.raises(KeyboardInterrupt):
        with video_writer(path, 10.0, encoder) as write:
            write(frames(1)[0])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unreadable_video_is_a_one_line_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DensePoseError, match="cannot open video"):
        probe_video(tmp_path / "broken.mp4")
    with pytest.raises(DensePoseError, match="cannot open video"):
        list(read_frames(tmp_path / "broken.mp4"))


def test_codec_probing_without_imageio_ffmpeg_prints_nothing(monkeypatch, capfd):
    """Without the [video] extra the encoder comes from OpenCV's probes; those that fail (no
    H.264 encoder, no VP9 tag in this build...) must not print FFmpeg's or OpenCV's errors."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    capfd.readouterr()
    encoder = choose_encoder()
    captured = capfd.readouterr()
    assert encoder.ffmpeg is None and encoder.name.startswith("opencv-")
    assert captured.err == "" and captured.out == ""


def test_undecodable_frames_keep_their_place_and_are_reported(tmp_path):
    path = tmp_path / "damaged.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(20):
        writer.write(np.full((48, 64, 3), 10 * index + 5, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    for frame in [1, *range(12, 20)]:  # one frame, and the last eight (a damaged end)
        end = data.index(b"\xff\xd9", starts[frame]) + 2
        data[starts[frame]:end] = bytes(end - starts[frame])
    path.write_bytes(bytes(data))
    reports = []
    decoded = list(read_frames(path, reports.append))
    assert len(decoded) == 20
    assert [index for index, frame in enumerate(decoded) if frame is None] == [1, *range(12, 20)]
    # The frames that decode are the right ones (MJPEG keeps flat colours within a few levels).
    assert [round((int(frame[0, 0, 0]) - 5) / 10) for frame in decoded if frame is not None] == [0, *range(2, 12)]
    assert reports == ["frame 1 could not be decoded", "frames 12-19 of the 20 the file lists could not be decoded (damaged or truncated file)"]
