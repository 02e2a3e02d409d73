"""The official GPS data files: the memory-mapped Pdist pickle, the .mat files, downloads."""
from __future__ import annotations

import pickle
import struct
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from densepose_torch.errors import DensePoseError
from densepose_torch.evaluation import download_official_data, load_official_surface
from densepose_torch.evaluation.pickled_array import memmap_pickled_array


class Python2StylePickler(pickle._Pickler):
    """numpy's own pickling of an array, with byte strings written as Python 2 wrote its str
    (SHORT_BINSTRING / BINSTRING): the structure of the official Pdist_matrix.pkl, which the
    official code reads with encoding="latin1"."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def write_pickle(path: Path, content: dict, style: str) -> Path:
    with open(path, "wb") as handle:
        if style == "python2":
            Python2StylePickler(handle, protocol=2).dump(content)
        else:
            pickle.dump(content, handle, protocol=int(style[-1]))
    return path


def write_fake_official_data(folder: Path) -> Path:
    """A 4-vertex geodesic mesh whose pair distance is 10 * larger index + smaller index (so
    every lookup can be checked by eye), and a subdivided mesh of two vertices per part:
    (U, V) = (0.25, 0.5) and (0.75, 0.5), the second of part 1 a seam duplicate of the first."""
    folder.mkdir(parents=True, exist_ok=True)
    mesh_size = 4
    pairs = [(i, j) for i in range(mesh_size) for j in range(i)]  # lower triangle, row-major
    pdist = np.array([[10 * i + j] for i, j in pairs], np.float32)
    write_pickle(folder / "Pdist_matrix.pkl", {"Pdist_matrix": pdist}, "python2")
    parts = np.repeat(np.arange(1, 25), 2)
    u = np.tile([0.25, 0.75], 24)
    v = np.full(48, 0.5)
    # Subdivided vertex k -> mesh vertex (1-based): part 1 -> mesh 1, 1 (seam); others cycle.
    mesh = np.array([1, 1] + [1 + (k % mesh_size) for k in range(2, 48)], np.int32)
    scipy.io.savemat(folder / "SMPL_subdiv.mat", {"U_subdiv": u[None], "V_subdiv": v[None], "Part_ID_subdiv": parts[None].astype(np.uint8)})
    scipy.io.savemat(folder / "SMPL_SUBDIV_TRANSFORM.mat", {"index": mesh[:, None]})
    return folder


@pytest.mark.parametrize("style", ["python2", "protocol3", "protocol4", "protocol5"])
def test_pickled_array_is_memory_mapped(tmp_path, style):
    array = (np.arange(1000, dtype=np.float32) * 0.25).reshape(1000, 1)
    path = write_pickle(tmp_path / "p.pkl", {"Pdist_matrix": array, "note": "x"}, style)
    reference = pickle.load(open(path, "rb"), encoding="latin1")["Pdist_matrix"]  # what the official code gets
    mapped = memmap_pickled_array(path, "Pdist_matrix")
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32 and mapped.shape == (1000, 1)
    np.testing.assert_array_equal(mapped, reference)


def test_pickled_array_is_not_read_into_memory(tmp_path):
    array = np.arange(8_000_000, dtype=np.float32)[:, None]  # 32 MB of payload
    path = write_pickle(tmp_path / "big.pkl", {"Pdist_matrix": array}, "python2")
    del array
    tracemalloc.start()
    mapped = memmap_pickled_array(path, "Pdist_matrix")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000, peak  # reading the payload would allocate 32 MB
    assert mapped[7_999_999, 0] == 7_999_999.0 and mapped[12345, 0] == 12345.0


def test_pickle_without_raw_bytes_is_loaded_whole_with_a_warning(tmp_path):
    # Python 3 at protocol 2 wraps bytes in a codecs.encode call: not mappable.
    array = np.arange(10, dtype=np.float32)[:, None]
    path = write_pickle(tmp_path / "p.pkl", {"Pdist_matrix": array}, "protocol2")
    with pytest.warns(UserWarning, match="loading the whole file"):
        np.testing.assert_array_equal(memmap_pickled_array(path, "Pdist_matrix"), array)


def test_bad_pickles_are_one_line_errors(tmp_path):
    (tmp_path / "text.pkl").write_bytes(b"hello world")
    with pytest.raises(DensePoseError):
        memmap_pickled_array(tmp_path / "text.pkl", "Pdist_matrix")
    path = write_pickle(tmp_path / "other.pkl", {"something_else": np.zeros((5, 1), np.float32)}, "python2")
    with pytest.raises(DensePoseError, match="no numpy array under the key 'Pdist_matrix'"):
        memmap_pickled_array(path, "Pdist_matrix")


def test_official_surface_from_files(tmp_path):
    surface = load_official_surface(write_fake_official_data(tmp_path / "data"))
    assert surface.mesh_size == 4 and isinstance(surface.pairwise, np.memmap)
    # Nearest vertex within the point's part; background and unknown parts have none.
    nearest = surface.nearest_vertices(np.array([1, 1, 2, 0, 25]), np.array([0.3, 0.9, 0.7, 0.5, 0.5]), np.array([0.5] * 5))
    assert nearest.tolist() == [0, 1, 3, -1, -1]
    # Subdivided vertices 2, 3, 4, 5 -> mesh 2, 3, 0, 1 (0-based); 0 and 1 share mesh vertex 0.
    distances = surface.geodesic_distances(np.array([2, 3, 2, 0, 4, 5]), np.array([3, 2, 4, 1, 0, 2]))
    assert distances.tolist() == [32.0, 32.0, 20.0, 0.0, 0.0, 21.0]


def test_missing_official_files_name_the_urls(tmp_path):
    with pytest.raises(DensePoseError) as error:
        load_official_surface(tmp_path)
    message = str(error.value)
    assert "https://dl.fbaipublicfiles.com/densepose/data/Pdist_matrix.pkl" in message and "\n" not in message


def test_offline_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEPOSE_TORCH_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DensePoseError) as error:
        download_official_data()
    message = str(error.value)
    assert "https://dl.fbaipublicfiles.com/densepose/data/SMPL_subdiv.mat" in message
    assert str(tmp_path / "cache" / "densepose_eval" / "SMPL_subdiv.mat") in message and "\n" not in message


class _MakesDirectory:
    """Unpickling this would create a directory: a stand-in for code a tampered file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("style", ["python2", "protocol2"])  # the mapped path and the whole-file fallback
def test_pickle_globals_other_than_numpy_are_refused(tmp_path, style):
    target = tmp_path / "created"
    content = {"Pdist_matrix": np.zeros((300, 1), np.float32), "extra": _MakesDirectory(target)}
    path = write_pickle(tmp_path / "p.pkl", content, style)
    with pytest.raises(DensePoseError, match=r"it names \S*mkdir, which a file of weights or data never needs"):
        memmap_pickled_array(path, "Pdist_matrix")
    assert not target.exists()
