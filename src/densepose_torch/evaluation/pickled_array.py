"""Memory-map a large numpy array stored inside a pickle, without reading it.

The official geodesic distance table `Pdist_matrix.pkl` is a ~1.5 GB pickle of
`{"Pdist_matrix": ndarray}`. numpy pickles an array's memory as one raw byte string, so its bytes
sit unchanged somewhere in the file: we walk the pickle's opcodes (skipping payloads instead of
reading them), find that byte string, and unpickle everything else (dict, dtype, shape) with the
payload replaced by an empty one. The array is then an `np.memmap` at the payload's offset.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import DensePoseError
from ..io.safe_pickle import SafeUnpickler, safe_load

# Length prefix (struct format) of each variable-length opcode argument kind of pickletools.
_LENGTH_PREFIX = {
    pickletools.TAKEN_FROM_ARGUMENT1: "<B",
    pickletools.TAKEN_FROM_ARGUMENT4: "<i",
    pickletools.TAKEN_FROM_ARGUMENT4U: "<I",
    pickletools.TAKEN_FROM_ARGUMENT8U: "<Q",
}
_RAW_BYTES_OPCODES = {"SHORT_BINSTRING", "BINSTRING", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_OPCODES = {op.code.encode("latin1"): op for op in pickletools.opcodes}
_EMPTY_BYTES = pickle.SHORT_BINBYTES + b"\x00"
_FRAME_OPCODE_SIZE = 9  # opcode + 8-byte frame length


@dataclass(frozen=True)
class _Payload:
    opcode_offset: int  # where the opcode byte is
    data_offset: int  # where its raw bytes start
    length: int


def _scan(handle) -> tuple[_Payload | None, list[int]]:
    """Walk the opcodes of the pickle in `handle`, seeking over every length-prefixed argument.
    Returns the largest raw byte string (str of Python 2, bytes/bytearray of Python 3) and the
    offsets of the FRAME opcodes (protocol 4+), whose sizes no longer hold once it is cut out."""
    largest = None
    frames = []
    while True:
        offset = handle.tell()
        code = handle.read(1)
        if not code:
            raise DensePoseError("truncated pickle (no STOP opcode)")
        op = _OPCODES.get(code)
        if op is None:
            raise DensePoseError(f"not a pickle (unknown opcode {code!r} at byte {offset})")
        if op.arg is not None:
            prefix = _LENGTH_PREFIX.get(op.arg.n)
            if prefix is None:
                op.arg.reader(handle)
            else:
                (length,) = struct.unpack(prefix, handle.read(struct.calcsize(prefix)))
                data_offset = handle.tell()
                handle.seek(length, io.SEEK_CUR)
                if op.name in _RAW_BYTES_OPCODES and (largest is None or length > largest.length):
                    largest = _Payload(offset, data_offset, length)
        if op.name == "FRAME":
            frames.append(offset)
        if op.name == "STOP":
            return largest, frames


class _ArrayLayout:
    """Stands in for an ndarray while unpickling: keeps dtype, shape and memory order."""

    def __init__(self, dtype=None, shape=None, fortran=False):
        self.dtype, self.shape, self.fortran = dtype, shape, fortran

    def __setstate__(self, state):
        # ndarray.__reduce__ state: (version, shape, dtype, is_fortran, raw) or, unversioned, the last four.
        shape, dtype, fortran = state[-4], state[-3], state[-2]
        self.dtype, self.shape, self.fortran = np.dtype(dtype), tuple(int(n) for n in shape), bool(fortran)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _layout_from_buffer(buffer, dtype, shape, order):
    return _ArrayLayout(np.dtype(dtype), tuple(int(n) for n in shape), order == "F")


class _LayoutUnpickler(SafeUnpickler):
    """Unpickles numpy arrays (pickle protocols 2 to 5, numpy 1 or 2) as `_ArrayLayout`s."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return lambda *args: _ArrayLayout()
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _layout_from_buffer
        return super().find_class(module, name)


def memmap_pickled_array(path: str | os.PathLike, key: str) -> np.ndarray:
    """The array stored under `key` in a pickled dict, memory-mapped read-only.

    Works for numpy's own pickling of the array's bytes (Python 2 str payloads, read with
    encoding latin1 as the official code does, and Python 3 bytes/bytearray payloads). A
    pickle whose array bytes are not stored raw (Python 3 protocol 2 wraps them in a codecs
    call) is loaded whole instead, with a warning.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            payload, frames = _scan(handle)
            if payload is None:
                return _load_whole(path, key)
            # Everything but the payload, with frames dropped (unframed data is valid at any protocol).
            end = payload.data_offset + payload.length
            pieces, position = [], 0
            cuts = sorted([(f, f + _FRAME_OPCODE_SIZE) for f in frames] + [(payload.opcode_offset, end)])
            for start, stop in cuts:
                handle.seek(position)
                pieces.append(handle.read(start - position))
                if start == payload.opcode_offset:
                    pieces.append(_EMPTY_BYTES)
                position = stop
            handle.seek(position)
            pieces.append(handle.read())
    except OSError as error:
        raise DensePoseError(f"cannot read {path}: {error}") from None
    except (struct.error, ValueError) as error:
        raise DensePoseError(f"{path} is not a readable pickle ({error})") from None
    try:
        content = _LayoutUnpickler(io.BytesIO(b"".join(pieces)), encoding="latin1").load()
    except Exception as error:  # any unpickling failure means the file is not what we expect
        raise DensePoseError(f"{path} is not a pickled dict of numpy arrays ({type(error).__name__}: {error})") from None
    layout = content.get(key) if isinstance(content, dict) else None
    if not isinstance(layout, _ArrayLayout):
        raise DensePoseError(f"{path} has no numpy array under the key {key!r}")
    if layout.nbytes != payload.length:
        raise DensePoseError(f"{path}: the array {key!r} is not the file's largest byte string; cannot memory-map it")
    return np.memmap(path, dtype=layout.dtype, mode="r", offset=payload.data_offset, shape=layout.shape,
                     order="F" if layout.fortran else "C")


def _load_whole(path: str, key: str) -> np.ndarray:
    warnings.warn(f"{path}: array bytes are not stored raw; loading the whole file into memory", stacklevel=3)
    try:
        with open(path, "rb") as handle:
            content = safe_load(handle)
    except Exception as error:  # any unpickling failure means the file is not what we expect
        raise DensePoseError(f"{path} is not a pickled dict of numpy arrays ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict) or not isinstance(content.get(key), np.ndarray):
        raise DensePoseError(f"{path} has no numpy array under the key {key!r}")
    return content[key]
