"""`POST /densepose`: the path-based endpoint of the dockerised service this project started from.

The body names files on the server: `{"DenseRootDir", "ClientID", "FileName", "ImagePath"}`.
The photo is `ImagePath/FileName.jpg`, or `ImagePath/FileName.png` when there is no `.jpg`
(exactly these two lower-case extensions, in that order); the `viton` render of its best
detection scoring above 0.8 is written, as JPEG (quality 95, atomically), to
`DenseRootDir/ClientID/FileName.jpg`, folders created as needed. Relative paths are relative
to the data root; every path, after following symbolic links, must lie inside the data root, or
the request is refused (403) before anything is read or written. A request whose render would
replace its own photo, or land where a folder is, is refused (409); a name longer than a file
system allows is refused (422). Messages name paths as the request did, never the server's own.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..io.images import write_picture
from ..render import viton
from ..results import DensePoseResult
from .errors import ServiceError

INPUT_EXTENSIONS = (".jpg", ".png")
OUTPUT_EXTENSION = ".jpg"
NAME_MAX_BYTES = 255  # the longest file or folder name of Linux file systems (ext4, xfs, btrfs)


class LegacyRequest(BaseModel):
    """The seed project's request body, field names as it spelled them."""

    model_config = ConfigDict(strict=True, extra="ignore")

    DenseRootDir: str
    ClientID: str
    FileName: str
    ImagePath: str


@dataclass(frozen=True)
class LegacyPaths:
    inputs: tuple[Path, ...]  # candidate photos, resolved, in the order they are tried
    given_inputs: tuple[str, ...]  # the same as the request named them, for messages
    output: Path  # where the render goes, resolved
    reply_path: str  # the output as the request named it

    def existing_input(self) -> Path:
        for candidate, given in zip(self.inputs, self.given_inputs):
            try:
                if candidate.is_file():
                    return candidate
            except OSError as error:  # e.g. a folder on the way is a file
                raise ServiceError(404, f"cannot look for photo {given}: {error.strerror or error}") from None
        raise ServiceError(404, "no photo " + " or ".join(self.given_inputs))

    def check_output(self) -> None:
        """409 unless the render can go to `output` without replacing a photo or a folder."""
        if self.output in self.inputs:
            raise ServiceError(409, f"the render {self.reply_path} would replace a photo the endpoint reads: "
                                    "choose a DenseRootDir or ClientID apart from the ImagePath")
        if self.output.is_dir():
            raise ServiceError(409, f"the render {self.reply_path} would replace a folder")
        for folder in self.output.parents:
            if folder.exists():
                if not folder.is_dir():
                    raise ServiceError(409, f"cannot write {self.reply_path}: a file stands where a folder of that path must be")
                break


def _inside(root: Path, given: PurePath) -> Path:
    """`given` (relative to `root`, or absolute) resolved through symbolic links; 403 unless the
    result lies inside `root` (itself resolved)."""
    try:
        resolved = (root / given).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
        raise ServiceError(403, f"path {str(given)!r} cannot be resolved inside the data root") from None
    if not resolved.is_relative_to(root):
        raise ServiceError(403, f"path {str(given)!r} is outside the data root")
    return resolved


def resolve_paths(data_root: Path | None, request: LegacyRequest) -> LegacyPaths:
    """Every path the request would touch, each checked to lie inside `data_root`."""
    if data_root is None:
        raise ServiceError(403, "POST /densepose is off: start the server with --data-root DIR")
    for name in ("FileName", "ImagePath", "DenseRootDir", "ClientID"):
        if not getattr(request, name):
            raise ServiceError(422, f"{name} must not be empty")
    root = data_root.resolve()
    given_inputs = tuple(PurePath(request.ImagePath) / f"{request.FileName}{extension}" for extension in INPUT_EXTENSIONS)
    given_output = PurePath(request.DenseRootDir) / request.ClientID / f"{request.FileName}{OUTPUT_EXTENSION}"
    for path in (*given_inputs, given_output):
        _check_name_lengths(path)
    inputs = tuple(_inside(root, path) for path in given_inputs)
    return LegacyPaths(inputs, tuple(map(str, given_inputs)), _inside(root, given_output), str(given_output))


def _check_name_lengths(path: PurePath) -> None:
    for name in path.parts:
        if len(os.fsencode(name)) > NAME_MAX_BYTES:
            raise ServiceError(422, f"the name {name[:40]}... is longer than {NAME_MAX_BYTES} bytes, the most a file system allows")


def read_photo(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ServiceError(404, f"cannot read photo {path.name}: {error.strerror or error}") from None


def write_legacy_render(path: Path, reply_path: str, image: np.ndarray, result: DensePoseResult) -> None:
    """What the seed service wrote: the `viton` picture of `result`, which holds the best person
    scoring above 0.8 (the predictor keeps only that one)."""
    try:
        write_picture(path, viton(image, result))
    except OSError as error:
        status = 409 if error.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST) else 500
        raise ServiceError(status, f"cannot write {reply_path}: {error.strerror or error}") from None
