"""Writing body_charts.npz against its declaration (`densepose_torch.synthetic.body.BODY_CHARTS_ARRAYS`)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from densepose_torch.io.atomic import atomic_path
from densepose_torch.synthetic.body import BODY_CHARTS_ARRAYS, check_body_charts
from densepose_torch.synthetic.dataset import write_reproducible_npz


def declared_arrays(values: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The values (arrays or lists, by key) cast to their declared dtypes, in the declared order
    (the file's member order), checked against the declaration. Integer casts must be lossless:
    an index that does not fit its declared type is an error, not a silent wrap-around."""
    extra = set(values) - {spec.key for spec in BODY_CHARTS_ARRAYS}
    if extra:
        raise ValueError(f"undeclared arrays {sorted(extra)}")
    out = {}
    for spec in BODY_CHARTS_ARRAYS:
        value = values[spec.key]
        array = np.asarray(value, dtype=str if spec.dtype == "str" else spec.dtype)
        if array.dtype.kind in "iub" and not np.array_equal(array, np.asarray(value)):
            raise ValueError(f"{spec.key} does not fit {spec.dtype}")
        out[spec.key] = array
    check_body_charts(out, "the built body")
    return out


def write_body_charts(path: Path, values: Mapping[str, object]) -> None:
    """Write the declared arrays to `path` atomically, with the same bytes for the same values."""
    with atomic_path(path) as tmp:
        write_reproducible_npz(tmp, declared_arrays(values))
