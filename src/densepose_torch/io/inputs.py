"""Turning the INPUT arguments of `densepose predict` into the list of files to process.

An argument is
* a file: taken as it is (a video if its extension is one, else an image);
* a folder: its images and videos, sorted by name; with `recursive`, those of its sub-folders
  too, which keep their place below the folder in the output tree;
* a glob pattern (`*`, `?`, `[...]`; `**` crosses folders): the matching images and videos,
  sorted; with `recursive` they keep their path below the pattern's fixed leading folder.
Files whose extension is neither an image's nor a video's, and hidden files, are left out of
folders and patterns. With `folders_as_videos`, a folder (named, or matched by a pattern) is one
video whose frames are the images directly in it; with `recursive`, so is each sub-folder that
holds images. Each item carries the path its outputs are named after (`relative`), so
`image/00001_00.jpg` gives outputs with the stem `00001_00`.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ..errors import DensePoseError
from .images import IMAGE_EXTENSIONS
from .video import VIDEO_EXTENSIONS

InputKind = Literal["image", "video"]
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    path: Path  # the file to read
    relative: PurePosixPath  # its place in the output tree, e.g. "sub/00001_00.jpg"
    kind: InputKind

    @property
    def output_stem(self) -> PurePosixPath:
        """`relative` without its extension (a folder of frames: its name as it is): what every
        output of this input is named after."""
        return self.relative if self.path.is_dir() else self.relative.with_suffix("")


def input_kind(path: Path) -> InputKind:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS and not path.name.startswith(".")


def _folder_items(folder: Path, recursive: bool) -> list[InputItem]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted((path for path in found if path.is_file() and _is_media(path)), key=lambda path: path.relative_to(folder).parts)
    if recursive:
        files = [path for path in files if not any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])]
    return [InputItem(path, PurePosixPath(*path.relative_to(folder).parts), input_kind(path)) for path in files]


def _pattern_root(pattern: str) -> Path:
    """The leading folders of a pattern that contain no glob character."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARACTERS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _pattern_items(pattern: str, recursive: bool, folders_as_videos: bool) -> list[InputItem]:
    root = _pattern_root(pattern)
    matches = sorted(Path(match) for match in glob.glob(pattern, recursive=True))
    if folders_as_videos:
        folders = [path for path in matches if path.is_dir() and not path.name.startswith(".") and _holds_images(path)]
        return [InputItem(path, PurePosixPath(*path.relative_to(root).parts) if recursive else PurePosixPath(path.name), "video")
                for path in folders]
    files = [path for path in matches if path.is_file() and _is_media(path)]
    items = []
    for path in files:
        relative = PurePosixPath(*path.relative_to(root).parts) if recursive else PurePosixPath(path.name)
        items.append(InputItem(path, relative, input_kind(path)))
    return items


def _holds_images(folder: Path) -> bool:
    return any(path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") for path in folder.iterdir())


def _frame_folders(folder: Path, recursive: bool) -> list[InputItem]:
    """`folder` and (with `recursive`) its non-hidden sub-folders that hold images, each a video
    named after the folder (below `folder`'s parent)."""
    found = [folder, *(sorted(path for path in folder.rglob("*") if path.is_dir()) if recursive else [])]
    items = []
    for path in found:
        parts = path.relative_to(folder).parts
        if not any(part.startswith(".") for part in parts) and _holds_images(path):
            items.append(InputItem(path, PurePosixPath(folder.resolve().name, *parts), "video"))
    return items


def expand_inputs(arguments: list[str], recursive: bool = False, folders_as_videos: bool = False) -> list[InputItem]:
    """The files named by `arguments`, in order (each argument's files sorted), without
    duplicates; a DensePoseError when an argument names nothing or two inputs would write to
    the same output names. With `folders_as_videos`, folders of images are videos (module docstring)."""
    items: list[InputItem] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_file():
            found = [InputItem(path, PurePosixPath(path.name), input_kind(path))]
        elif path.is_dir() and folders_as_videos:
            found = _frame_folders(path, recursive)
            if not found:
                raise DensePoseError(f"no image frames in folder {argument}" + ("" if recursive else " (use --recursive for its sub-folders)"))
        elif path.is_dir():
            found = _folder_items(path, recursive)
            if not found:
                raise DensePoseError(f"no images or videos in folder {argument}" + ("" if recursive else " (use --recursive for its sub-folders)"))
        elif _GLOB_CHARACTERS & set(argument):
            found = _pattern_items(argument, recursive, folders_as_videos)
            if not found:
                raise DensePoseError(f"no images or videos match {argument}")
        else:
            raise DensePoseError(f"no such file or folder: {argument}")
        items.extend(found)
    return _unique(items)


def _unique(items: list[InputItem]) -> list[InputItem]:
    seen_files: set[str] = set()
    owners: dict[PurePosixPath, Path] = {}
    unique = []
    for item in items:
        key = os.path.realpath(item.path)
        if key in seen_files:
            continue
        seen_files.add(key)
        stem = item.output_stem
        if stem in owners:
            raise DensePoseError(f"{owners[stem]} and {item.path} would write the same outputs ({stem}.*); "
                                 "rename one, or keep sub-folders with --recursive")
        owners[stem] = item.path
        unique.append(item)
    return unique
