"""Reading pickles without running code from them.

Model-zoo and Caffe2 checkpoints and DensePose's evaluation data are pickles of dicts, lists,
strings, numbers and numpy arrays. `pickle.load` calls whatever function a file names, so a crafted
file runs code when loaded. This reader admits only the few callables such files need (numpy's
array, scalar and dtype reconstruction, ordered dicts, a few containers, and the codec call that
Python 3 pickles use for Python 2 byte strings) and refuses every other name before anything runs.
"""
from __future__ import annotations

import pickle
from typing import IO, Any

# (module, name) of every global a safe pickle may name. numpy 1 spells its core module
# numpy.core, numpy 2 numpy._core; either spelling loads with either numpy.
ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
    ("__builtin__", "bytearray"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside ALLOWED_GLOBALS (`name` says which)."""

    def __init__(self, name: str):
        super().__init__(f"it names {name}, which a file of weights or data never needs")
        self.name = name


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ALLOWED_GLOBALS."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"{module}.{name}")
        if module == "__builtin__":  # Python 2's name of builtins
            module = "builtins"
        # numpy 2's spelling first (its numpy.core is a deprecated alias), numpy 1's second.
        spellings = [module]
        if module.startswith("numpy.core."):
            spellings = ["numpy._core." + module[len("numpy.core.") :], module]
        elif module.startswith("numpy._core."):
            spellings = [module, "numpy.core." + module[len("numpy._core.") :]]
        for spelling in spellings[:-1]:
            try:
                return super().find_class(spelling, name)
            except ModuleNotFoundError:
                continue
        return super().find_class(spellings[-1], name)


def safe_load(handle: IO[bytes]) -> Any:
    """The object pickled in `handle` (Python 2 strings read as latin1, as numpy's pickles need),
    or UnsafePickleError if it would call anything but ALLOWED_GLOBALS."""
    return SafeUnpickler(handle, encoding="latin1").load()
