"""An output folder made ready before any work: created, writable, and holding only outputs of
the same settings.

A run that would fail to write should fail before the model loads and runs on every input; and a
re-run over a folder with other settings (model, threshold, render options) must not silently
keep the old files beside new ones. Each run records the settings that decide what its files
contain in OUT/.densepose-run.json; a later run with other settings is refused unless it redoes
every output (--overwrite).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Iterable

from ..errors import DensePoseError
from .atomic import atomic_write

RUN_RECORD = ".densepose-run.json"


def prepare_output_folder(folder: Path, subfolders: Iterable[str] = ()) -> None:
    """Create `folder` and check that files can be created in it and that none of `subfolders`
    (where outputs go) is a file; one-line DensePoseError otherwise."""
    if folder.exists() and not folder.is_dir():
        raise DensePoseError(f"output {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DensePoseError(f"cannot create the output folder {folder}: {error.strerror or error}") from None
    for name in subfolders:
        if (folder / name).exists() and not (folder / name).is_dir():
            raise DensePoseError(f"{folder / name} is a file, but the outputs go into a folder of that name; move it away")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise DensePoseError(f"cannot write into the output folder {folder}: {error.strerror or error}") from None


def check_run_record(folder: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to add to outputs made with other `settings` (unless `overwrite`: then every output
    is redone), and record this run's settings."""
    path = folder / RUN_RECORD
    previous = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError, AttributeError):
            previous = None  # an unreadable record is replaced
    if isinstance(previous, dict) and not overwrite:
        changed = [name for name in sorted(set(previous) | set(settings)) if previous.get(name) != settings.get(name)]
        if changed:
            was = ", ".join(f"{name} {previous.get(name)!r}" for name in changed)
            now = ", ".join(f"{name} {settings.get(name)!r}" for name in changed)
            raise DensePoseError(f"{folder} holds outputs made with {was}; this run has {now}: add --overwrite to redo "
                                 "them all, or write into another folder")
    with atomic_write(path, "w") as handle:
        json.dump({"settings": settings}, handle, indent=1)
