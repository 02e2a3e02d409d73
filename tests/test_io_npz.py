"""The .npz results format: readable with numpy alone, and read back exactly."""
from __future__ import annotations

import numpy as np
import pytest

from densepose_torch.errors import DensePoseError
from densepose_torch.io.npz import FORMAT, read_npz, write_npz
from densepose_torch.results import ChartResult, DensePoseResult


def chart(x, y, height, width, part, with_confidences, seed):
    rng = np.random.default_rng(seed)
    labels = np.full((height, width), part, np.uint8)
    labels[0, 0] = 0
    uv = rng.random((2, height, width), dtype=np.float32) * (labels > 0)
    extra = {}
    if with_confidences:
        extra = {name: rng.random((height, width), dtype=np.float32) + 1 for name in ("sigma_2", "kappa_u", "kappa_v")}
    return ChartResult(x=x, y=y, labels=labels, uv=uv.astype(np.float32), **extra)


def sample_result(with_confidences=True):
    charts = [chart(2, 3, 5, 6, 4, with_confidences, 0), chart(5, 4, 6, 5, 17, with_confidences, 1)]
    return DensePoseResult(image_size=(12, 14), boxes=np.array([[2.5, 3.2, 8.9, 8.7], [5.1, 4.0, 10.6, 10.3]], np.float32),
                           scores=np.array([0.97, 0.85], np.float32), charts=charts)


def test_file_holds_full_image_maps_readable_without_pickle(tmp_path):
    result = sample_result()
    path = write_npz(tmp_path / "photo.npz", result)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    maps = result.to_dense()
    assert str(arrays["format"]) == FORMAT
    assert arrays["I"].dtype == np.uint8 and np.array_equal(arrays["I"], maps.I)
    assert arrays["U"].dtype == np.float32 and np.array_equal(arrays["U"], maps.U)
    assert arrays["V"].dtype == np.float32 and np.array_equal(arrays["V"], maps.V)
    assert arrays["instance"].dtype == np.uint16 and np.array_equal(arrays["instance"], maps.instance)
    assert arrays["boxes"].shape == (2, 4) and arrays["scores"].shape == (2,)
    assert np.array_equal(arrays["chart_xy"], [[2, 3], [5, 4]])
    # Overlap (rows 4..7, columns 5..7): the higher score (detection 1 of the file, part 4) owns it.
    assert arrays["I"][5, 6] == 4 and arrays["instance"][5, 6] == 1
    assert arrays["I"][9, 8] == 17 and arrays["instance"][9, 8] == 2
    # Confidence maps follow the owner of each pixel, 0 at background.
    assert arrays["sigma_2"][5, 6] == result.charts[0].sigma_2[5 - 3, 6 - 2]
    assert arrays["sigma_2"][9, 8] == result.charts[1].sigma_2[9 - 4, 8 - 5]
    assert arrays["sigma_2"][0, 0] == 0 and arrays["sigma_2"][3, 2] == 0  # outside / chart background
    assert "fine_segm_confidence" not in arrays


def test_read_gives_back_the_written_result(tmp_path):
    result = sample_result()
    back = read_npz(write_npz(tmp_path / "a.npz", result))
    assert back.image_size == result.image_size
    assert np.array_equal(back.boxes, result.boxes) and np.array_equal(back.scores, result.scores)
    for mine, theirs in zip(back.charts, result.charts):
        assert (mine.x, mine.y) == (theirs.x, theirs.y)
        assert np.array_equal(mine.labels, theirs.labels) and np.array_equal(mine.uv, theirs.uv)
        assert mine.confidences().keys() == theirs.confidences().keys()
        for name, values in theirs.confidences().items():
            assert np.array_equal(mine.confidences()[name], values)


def test_empty_result_and_model_without_confidences(tmp_path):
    empty = DensePoseResult(image_size=(4, 5), boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32), charts=[])
    back = read_npz(write_npz(tmp_path / "empty.npz", empty))
    assert len(back) == 0 and back.image_size == (4, 5)
    with np.load(tmp_path / "empty.npz") as archive:
        assert archive["I"].shape == (4, 5) and not archive["I"].any()
        assert "sigma_2" not in archive.files
    plain = read_npz(write_npz(tmp_path / "plain.npz", sample_result(with_confidences=False)))
    assert plain.charts[0].confidences() == {}


def test_not_our_file_is_a_one_line_error(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DensePoseError, match="not a densepose-torch .npz"):
        read_npz(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DensePoseError, match="not a DensePose .npz"):
        read_npz(tmp_path / "junk.npz")
    with pytest.raises(DensePoseError, match="no such file"):
        read_npz(tmp_path / "missing.npz")
