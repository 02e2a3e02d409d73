"""The official GPS data files (DensePose's subdivided SMPL and its geodesic distance table):
where they come from, and loading them into a `SmplGeodesicSurface`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from ..errors import DensePoseError
from ..io.download import cache_dir, cached_download
from .pickled_array import memmap_pickled_array
from .vertex_surfaces import ChartVertices, SmplGeodesicSurface

DATA_URL = "https://dl.fbaipublicfiles.com/densepose/data/"
SUBDIV_FILE = "SMPL_subdiv.mat"
TRANSFORM_FILE = "SMPL_SUBDIV_TRANSFORM.mat"
PDIST_FILE = "Pdist_matrix.pkl"  # ~1.5 GB
OFFICIAL_FILES = (SUBDIV_FILE, TRANSFORM_FILE, PDIST_FILE)
CACHE_SUBDIR = "densepose_eval"


def official_data_dir() -> Path:
    """Where `download_official_data` puts the files: <cache>/densepose_eval."""
    return cache_dir() / CACHE_SUBDIR


def download_official_data() -> Path:
    """Fetch the three files into `official_data_dir()` unless already there (offline: a
    one-line error naming each URL and where to put the file by hand)."""
    for name in OFFICIAL_FILES:
        cached_download(DATA_URL + name, f"{CACHE_SUBDIR}/{name}", timeout=120.0)
    return official_data_dir()


def _loadmat(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        content = loadmat(path)
    except (OSError, ValueError, TypeError) as error:
        raise DensePoseError(f"cannot read {path} as a MATLAB file ({error})") from None
    missing = [key for key in keys if key not in content]
    if missing:
        raise DensePoseError(f"{path} lacks {', '.join(missing)}; is it the official {path.name}?")
    return content


def load_official_surface(folder: str | os.PathLike) -> SmplGeodesicSurface:
    """The official GPS surface from a folder holding SMPL_subdiv.mat, SMPL_SUBDIV_TRANSFORM.mat
    and Pdist_matrix.pkl (the distance table is memory-mapped, not read)."""
    folder = Path(folder).expanduser()
    missing = [name for name in OFFICIAL_FILES if not (folder / name).is_file()]
    if missing:
        raise DensePoseError(
            f"{folder} lacks {', '.join(missing)}; download {' and '.join(DATA_URL + n for n in missing)} into it "
            f"(or use --surface official to download them into {official_data_dir()})"
        )
    subdiv = _loadmat(folder / SUBDIV_FILE, ("U_subdiv", "V_subdiv", "Part_ID_subdiv"))
    transform = _loadmat(folder / TRANSFORM_FILE, ("index",))
    uv = np.stack([np.asarray(subdiv["U_subdiv"]).reshape(-1), np.asarray(subdiv["V_subdiv"]).reshape(-1)], axis=1)
    vertices = ChartVertices(np.asarray(subdiv["Part_ID_subdiv"]).reshape(-1), uv)
    pairwise = memmap_pickled_array(folder / PDIST_FILE, "Pdist_matrix")
    try:
        # The transform is 1-based (MATLAB) into the distance table's mesh.
        return SmplGeodesicSurface(vertices, np.asarray(transform["index"]).reshape(-1).astype(np.int64) - 1, pairwise)
    except ValueError as error:
        raise DensePoseError(f"inconsistent official data in {folder}: {error}") from None
