"""Downloading reference files once into a cache directory, verified, with an offline message
that says exactly which file to place where."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import DensePoseError
from .atomic import atomic_write

CACHE_ENV = "DENSEPOSE_TORCH_CACHE"
# Exit code for "the file is not here and could not be fetched" (distinct from bad input).
OFFLINE_EXIT_CODE = 2


def cache_dir() -> Path:
    """Where downloaded weights and data live: $DENSEPOSE_TORCH_CACHE, else ~/.cache/densepose_torch."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "densepose_torch"


def md5_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_download(url: str, relative_path: str, md5_prefix: str | None = None, timeout: float = 30.0) -> Path:
    """The local copy of `url` at cache_dir()/relative_path, downloading it first if missing.
    `md5_prefix` (the leading hex digits of the file's md5) is checked after download and on
    files placed by hand."""
    target = cache_dir() / relative_path
    if target.is_file():
        _verify(target, md5_prefix)
        return target
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with atomic_write(target) as handle, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"downloading {target.name}", leave=False
            ) as bar:
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    handle.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise DensePoseError(
            f"cannot download {url} ({reason}); without network, download it elsewhere and place it at {target}",
            exit_code=OFFLINE_EXIT_CODE,
        ) from None
    _verify(target, md5_prefix)
    return target


def _stamp(path: Path) -> str:
    status = path.stat()
    return f"{status.st_size} {status.st_mtime_ns}"


def checksum_ok(path: Path, md5_prefix: str) -> bool:
    """Whether the file's md5 starts with `md5_prefix`. A file that passed once is remembered in
    a PATH.md5ok note (its size and modification time), so that listings need not hash gigabytes
    again; a changed file is hashed again."""
    note = path.with_name(path.name + ".md5ok")
    try:
        if note.read_text(encoding="utf-8").strip() == f"{md5_prefix} {_stamp(path)}":
            return True
    except OSError:
        pass
    if not md5_of(path).startswith(md5_prefix):
        return False
    with contextlib.suppress(OSError):  # a read-only cache only loses the shortcut
        with atomic_write(note, "w") as handle:
            handle.write(f"{md5_prefix} {_stamp(path)}\n")
    return True


def _verify(path: Path, md5_prefix: str | None) -> None:
    if not md5_prefix or checksum_ok(path, md5_prefix):
        return
    actual = md5_of(path)
    broken = path.with_name(path.name + ".corrupt")
    shutil.move(path, broken)
    raise DensePoseError(f"{path.name} is corrupt (md5 {actual[:8]}..., expected {md5_prefix}...); moved it to {broken}, download it again")
