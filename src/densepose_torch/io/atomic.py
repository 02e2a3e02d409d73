"""Atomic file writing: a reader (or a re-run after Ctrl-C) never sees a half-written file."""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

TEMPORARY_MARK = ".densepose-tmp-"  # in the name of every temporary file below, so leftovers can be found


def _default_mode() -> int:
    """The permissions a plainly created file would get (mkstemp makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _publish(tmp: str | os.PathLike, target: Path) -> None:
    os.chmod(tmp, stat.S_IMODE(_default_mode()))
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", suffix: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it replaces `path` in one rename, on any
    error (KeyboardInterrupt included) it is removed and `path` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{TEMPORARY_MARK}", suffix=suffix or ".part")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Like `atomic_write`, for writers that want a file name (cv2.imwrite, np.savez, video
    encoders): they write to the yielded temporary path, which then replaces `path`.
    `suffix` keeps the extension such writers look at (default: the target's own)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}{TEMPORARY_MARK}", suffix=suffix or target.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise OSError(f"nothing was written to {target}")
        _publish(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files that writers killed mid-write (SIGKILL, a lost machine) left in
    `folder` and below; returns how many. Only for a folder no other writer is using now."""
    removed = 0
    for path in Path(folder).rglob(f".*{TEMPORARY_MARK}*"):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
