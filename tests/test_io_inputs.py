"""Expanding the INPUT arguments of `densepose predict`."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from densepose_torch.errors import DensePoseError
from densepose_torch.io.inputs import expand_inputs


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    for name in ("b.jpg", "a.png", "c.mp4", "notes.txt", ".hidden.jpg", "sub/d.jpg", "sub/deeper/e.webm", ".cache/f.jpg"):
        touch(tmp_path / "photos" / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def relatives(items):
    return [str(item.relative) for item in items]


def test_folder_is_sorted_media_only_without_sub_folders(tree):
    items = expand_inputs(["photos"])
    assert relatives(items) == ["a.png", "b.jpg", "c.mp4"]
    assert [item.kind for item in items] == ["image", "image", "video"]
    assert items[1].output_stem == PurePosixPath("b")


def test_recursive_folder_keeps_sub_folders_and_skips_hidden_ones(tree):
    assert relatives(expand_inputs(["photos"], recursive=True)) == ["a.png", "b.jpg", "c.mp4", "sub/d.jpg", "sub/deeper/e.webm"]


def test_glob_pattern_and_double_star(tree):
    assert relatives(expand_inputs(["photos/*.jpg"])) == ["b.jpg"]
    assert relatives(expand_inputs(["photos/**/*.jpg"])) == ["b.jpg", "d.jpg"]
    assert relatives(expand_inputs(["photos/**/*.jpg"], recursive=True)) == ["b.jpg", "sub/d.jpg"]


def test_files_keep_their_order_and_duplicates_go(tree):
    items = expand_inputs(["photos/b.jpg", "photos/a.png", "photos/b.jpg", "photos/notes.txt"])
    assert relatives(items) == ["b.jpg", "a.png", "notes.txt"]  # a named file is tried as an image
    assert items[2].kind == "image"


def test_two_inputs_with_one_output_name_are_refused(tree):
    touch(tree / "other" / "b.png")
    with pytest.raises(DensePoseError, match="would write the same outputs"):
        expand_inputs(["photos", "other"])
    touch(tree / "photos" / "b.png")
    with pytest.raises(DensePoseError, match=r"b\.\*"):
        expand_inputs(["photos"])


def test_nothing_found_is_a_one_line_error(tree):
    with pytest.raises(DensePoseError, match="no such file or folder"):
        expand_inputs(["nowhere.jpg"])
    with pytest.raises(DensePoseError, match="no images or videos match"):
        expand_inputs(["photos/*.bmp"])
    (tree / "empty").mkdir()
    with pytest.raises(DensePoseError, match="no images or videos in folder"):
        expand_inputs(["empty"])


def test_folders_of_frames_are_videos(tree):
    for name in ("frame_10.png", "frame_2.png", "frame_1.png"):
        touch(tree / "shots" / "walk.v2" / name)
    touch(tree / "shots" / "run" / "0001.jpg")
    touch(tree / "shots" / "notes" / "readme.txt")
    items = expand_inputs(["shots/walk.v2"], folders_as_videos=True)
    assert [(str(item.relative), item.kind, str(item.output_stem)) for item in items] == [("walk.v2", "video", "walk.v2")]
    assert relatives(expand_inputs(["shots"], recursive=True, folders_as_videos=True)) == ["shots/run", "shots/walk.v2"]
    assert relatives(expand_inputs(["shots/*"], folders_as_videos=True)) == ["run", "walk.v2"]
    with pytest.raises(DensePoseError, match="no image frames in folder"):
        expand_inputs(["shots"], folders_as_videos=True)  # its frames are in sub-folders


def test_frames_of_a_folder_come_in_natural_order(tmp_path):
    from densepose_torch.io.video import frame_files

    for name in ("frame_10.png", "frame_2.png", "frame_1.png", ".frame_0.png", "notes.txt"):
        touch(tmp_path / name)
    assert [path.name for path in frame_files(tmp_path)] == ["frame_1.png", "frame_2.png", "frame_10.png"]
