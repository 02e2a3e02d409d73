"""The images a comparison runs on: a folder's images, or the ground truth's images found in it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DensePoseError
from ..io.inputs import expand_inputs


@dataclass(frozen=True)
class ImageItem:
    key: str  # file-name-safe and unique: names the image's cache entries and thumbnails
    path: Path
    name: str  # as the report shows it (the path below the folder)
    image_id: Any = None  # the ground truth's id, with --gt

    def fingerprint(self) -> dict[str, int]:
        """What tells a cached result that its image file was replaced since."""
        stat = self.path.stat()
        return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _checked(items: list[ImageItem]) -> list[ImageItem]:
    seen: dict[str, str] = {}
    for item in items:
        if item.key in seen:
            raise DensePoseError(f"images {seen[item.key]!r} and {item.name!r} would share cache files; rename one")
        seen[item.key] = item.name
    return items


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def folder_images(folder: Path, limit: int | None, exclude: Path) -> list[ImageItem]:
    """The images of `folder` in name order (at most `limit`), leaving out those under
    `exclude` (the report folder, whose thumbnails must not become inputs)."""
    if not folder.is_dir():
        raise DensePoseError(f"no such image folder: {folder}")
    found = [item for item in expand_inputs([str(folder)]) if item.kind == "image" and not _inside(item.path, exclude)]
    if not found:
        raise DensePoseError(f"no images in {folder}")
    found = found[:limit] if limit else found
    return _checked([ImageItem(_key(str(item.relative)), item.path, str(item.relative)) for item in found])


def ground_truth_images(dataset: dict, folder: Path, limit: int | None) -> list[ImageItem]:
    """The ground truth's images in its order (at most `limit`), found in `folder` by file_name
    (as given, or its base name)."""
    if not folder.is_dir():
        raise DensePoseError(f"no such image folder: {folder}")
    items = []
    for image in dataset["images"][:limit] if limit else dataset["images"]:
        name = image.get("file_name")
        candidates = [folder / name, folder / Path(name).name] if isinstance(name, str) else []
        path = next((candidate for candidate in candidates if candidate.is_file()), None)
        if path is None:
            raise DensePoseError(f"image {image['id']!r} ({name or 'no file_name'}) of the ground truth is not in {folder}")
        items.append(ImageItem(_key(name), path, name, image["id"]))
    if not items:
        raise DensePoseError("the ground truth lists no images")
    return _checked(items)
