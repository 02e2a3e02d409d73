"""Hostile and careless input: model files that would run code, checkpoints whose keys fit several
architectures, decompression bombs, bad devices, output folders that cannot take the outputs, a
re-run with other settings, downloads that fail, and the surface of a synthetic set."""
from __future__ import annotations

import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from densepose_torch.checkpoint import load_model, read_state_dict, save_checkpoint
from densepose_torch.cli import main
from densepose_torch.errors import DensePoseError
from densepose_torch.evaluation.surface_names import surface_for
from densepose_torch.inference import Predictor
from densepose_torch.io import download
from densepose_torch.io.safe_pickle import UnsafePickleError, safe_load
from densepose_torch.jobs import predict as predict_job
from densepose_torch.jobs.predict import ModelChoice, build_predictor
from densepose_torch.synthetic.dataset import SYNTHETIC_DESCRIPTION
from densepose_torch.zoo import ZOO, get_zoo_model

from .test_cli_predict import fake, files_under, write_photos  # noqa: F401 - the fixture
from .test_golden import BOX_TOL, SCORE_TOL, _expected, _image

ATOP10P = "R_50_FPN_DL_WC1M_3x_Atop10P_CA"


class _CreatesAFile:
    """Pickles as a call of `open(marker, "w")`: loading it with plain pickle creates the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


# -- model files never run code -------------------------------------------------------------

def crafted_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """{kind: (crafted file, the file loading it would create)}: a model-zoo style .pkl and a
    torch.save .pth, each a plausible checkpoint with one poisoned entry."""
    made = {}
    for kind in ("pkl", "pth"):
        marker = folder / f"created-by-{kind}"
        payload = {"model": {"backbone.weight": np.zeros(3, np.float32), "evil": _CreatesAFile(marker)}}
        path = folder / f"weights.{kind}"
        if kind == "pkl":
            path.write_bytes(pickle.dumps(payload, protocol=2))
        else:
            torch.save(payload, path)
        made[kind] = (path, marker)
    return made


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_a_crafted_checkpoint_runs_nothing_and_names_the_opt_in(tmp_path, kind):
    path, marker = crafted_files(tmp_path)[kind]
    with pytest.raises(DensePoseError, match=r"run code from the file.*trust_checkpoint=True \(--trust-checkpoint\)") as error:
        load_model(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_the_cli_refuses_a_crafted_checkpoint_in_one_line(tmp_path, kind, capsys):
    path, marker = crafted_files(tmp_path)[kind]
    photos = write_photos(tmp_path / "photos", ["a.png"])
    assert main(["predict", str(photos), "-o", str(tmp_path / "out"), "--model", str(path)]) == 1
    assert "--trust-checkpoint" in one_line_error(capsys)
    assert not marker.exists()


def test_trust_checkpoint_is_the_explicit_opt_in(tmp_path):
    path, marker = crafted_files(tmp_path)["pkl"]
    with pytest.raises(DensePoseError):  # it runs, then is no checkpoint
        read_state_dict(path, trust_checkpoint=True)
    assert marker.exists()


def test_the_safe_reader_keeps_what_weights_files_hold(tmp_path):
    data = {"model": {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(2.5)},
            "names": ["x", "y"], "nested": (1, 2.0, None, b"raw", {"set": {1, 2}})}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        (tmp_path / "data.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
        with open(tmp_path / "data.pkl", "rb") as handle:
            loaded = safe_load(handle)
        np.testing.assert_array_equal(loaded["model"]["a"], data["model"]["a"])
        assert loaded["model"]["b"] == 2.5 and loaded["names"] == ["x", "y"] and loaded["nested"] == data["nested"]
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": _CreatesAFile(tmp_path / "m")}))
    with open(tmp_path / "evil.pkl", "rb") as handle, pytest.raises(UnsafePickleError, match=r"io\.open"):
        safe_load(handle)


def test_our_own_and_zoo_style_checkpoints_still_load(tmp_path, golden_checkpoint):
    zoo_style = golden_checkpoint("R_50_FPN_s1x")  # a detectron2 .pkl of numpy arrays
    model = load_model(zoo_style)
    ours = save_checkpoint(model, tmp_path / "ours.pth")
    again = load_model(ours)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name


# -- a file is never taken for another architecture -----------------------------------------

def test_keys_that_fit_several_architectures_are_refused_with_the_candidates(tmp_path, golden_checkpoint):
    neutral = tmp_path / "weights.pkl"
    shutil.copy(golden_checkpoint(ATOP10P), neutral)
    with pytest.raises(DensePoseError) as error:
        load_model(neutral)
    message = str(error.value)
    assert "\n" not in message and "config=" in message and "--config" in message
    candidates = [model.name for model in ZOO if model.name in message]
    assert ATOP10P in candidates and "R_50_FPN_DL_WC1M_s1x" in candidates


@pytest.mark.parametrize("how", ["config", "file name"])
def test_a_named_architecture_gives_detectron2s_people(tmp_path, golden_checkpoint, golden_dir, how):
    if how == "config":
        path = tmp_path / "weights.pkl"
        shutil.copy(golden_checkpoint(ATOP10P), path)
        model = load_model(path, config=ATOP10P)
    else:
        path = tmp_path / f"finetuned_{ATOP10P}_v2.pkl"
        shutil.copy(golden_checkpoint(ATOP10P), path)
        model = load_model(path)
    assert model.config == get_zoo_model(ATOP10P).architecture
    expected = _expected(golden_dir, ATOP10P, "astronaut")
    # The box pooler is what tells the candidates apart, so the best box already shows the right one
    # was built; only that box goes through the DensePose head, which keeps the test quick.
    result = Predictor(model, top_person=True)(_image(golden_dir, "astronaut"), channel_order="bgr")
    best = int(np.argmax(expected["scores"]))
    assert len(result) == 1 and abs(result.scores[0] - expected["scores"][best]) <= SCORE_TOL
    # The golden tests' tolerances: float32 summation order against detectron2's.
    np.testing.assert_allclose(result.boxes[0], expected["pred_boxes"][best], rtol=0, atol=BOX_TOL)


def test_the_command_line_names_the_architecture_with_config(tmp_path, golden_checkpoint, capsys):
    neutral = tmp_path / "weights.pkl"
    shutil.copy(golden_checkpoint(ATOP10P), neutral)
    photos = write_photos(tmp_path / "photos", ["a.png"])
    assert main(["predict", str(photos), "-o", str(tmp_path / "out"), "--model", str(neutral)]) == 1
    assert "--config NAME" in one_line_error(capsys)
    predictor = build_predictor(ModelChoice(str(neutral), config=ATOP10P), "cpu", "exact")
    assert predictor.model.config == get_zoo_model(ATOP10P).architecture


def test_keys_of_one_architecture_still_load_under_any_name(tmp_path, golden_checkpoint):
    path = tmp_path / "weights.pkl"
    shutil.copy(golden_checkpoint("R_50_FPN_s1x"), path)
    assert load_model(path).config == get_zoo_model("R_50_FPN_s1x").architecture


# -- bad input never costs other work -------------------------------------------------------

def png_bomb(path: Path, width: int = 60000, height: int = 60000) -> Path:
    """A few hundred bytes whose header declares width x height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_skipped_and_the_rest_of_its_batch_is_done(tmp_path, fake, capsys):  # noqa: F811
    photos = write_photos(tmp_path / "photos", ["a.png", "c.png"])
    png_bomb(photos / "b.png")
    out = tmp_path / "out"
    assert main(["predict", str(photos), "-o", str(out), "--batch-size", "3"]) == 1
    assert files_under(out) == ["npz/a.npz", "npz/c.npz"]
    err = capsys.readouterr().err
    assert "skipped" in err and "b.png" in err and "Traceback" not in err
    assert fake.batch_sizes == [2]


def test_the_bomb_message_names_the_limit_and_how_to_raise_it(tmp_path, fake, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    photos.mkdir()
    png_bomb(photos / "b.png", 7000, 7000)  # 49 MP: over the default 40 MP
    assert main(["predict", str(photos), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "7000x7000 pixels, over the limit of 40000000" in err and "--max-pixels" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")
@pytest.mark.parametrize("device,fragment", [("cuda", "no usable GPU"), ("bogus", "unknown device 'bogus'")])
def test_bad_devices_are_one_line_errors_before_any_work(tmp_path, monkeypatch, capsys, device, fragment):
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: pytest.fail("must not load a model"))
    photos = write_photos(tmp_path / "photos", ["a.png"])
    assert main(["predict", str(photos), "-o", str(tmp_path / "out"), "--device", device]) == 1
    assert fragment in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_an_output_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys, where):
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: pytest.fail("must not load a model"))
    photos = write_photos(tmp_path / "photos", ["a.png"])
    if where == "under a file":
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "out"
    else:  # not even root may create a folder here
        out = Path("/proc/self/densepose-out")
    assert main(["predict", str(photos), "-o", str(out)]) == 1
    assert str(out) in one_line_error(capsys)


def test_an_output_subfolder_that_is_a_file_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: pytest.fail("must not load a model"))
    photos = write_photos(tmp_path / "photos", ["a.png"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "npz").write_text("not a folder")
    assert main(["predict", str(photos), "-o", str(tmp_path / "out")]) == 1
    message = one_line_error(capsys)
    assert str(tmp_path / "out" / "npz") in message and "Errno" not in message


def test_a_rerun_with_other_settings_is_refused_unless_it_overwrites(tmp_path, fake, capsys):  # noqa: F811
    photos = write_photos(tmp_path / "photos", ["a.png", "b.png"])
    out = str(tmp_path / "out")
    assert main(["predict", str(photos), "-o", out]) == 0
    first = (tmp_path / "out" / "npz" / "a.npz").read_bytes()
    assert main(["predict", str(photos), "-o", out]) == 0  # same settings: nothing to redo
    assert fake.batch_sizes == [1, 1]
    capsys.readouterr()
    assert main(["predict", str(photos), "-o", out, "--min-score", "0.3"]) == 1
    message = one_line_error(capsys)
    assert "min_score 0.8" in message and "min_score 0.3" in message and "--overwrite" in message
    assert (tmp_path / "out" / "npz" / "a.npz").read_bytes() == first and fake.batch_sizes == [1, 1]
    assert main(["predict", str(photos), "-o", out, "--min-score", "0.3", "--overwrite"]) == 0
    assert fake.batch_sizes == [1, 1, 1, 1]
    assert (tmp_path / "out" / "npz" / "a.npz").read_bytes() != first  # now both people
    assert main(["predict", str(photos), "-o", out, "--min-score", "0.3"]) == 0  # the record follows the last run


def test_model_default_is_the_embedded_model_everywhere(tmp_path, fake, capsys):  # noqa: F811
    photos = write_photos(tmp_path / "photos", ["a.png"])
    assert main(["predict", str(photos), "-o", str(tmp_path / "out"), "--model", "default"]) == 0
    assert fake.loaded[-1][0] == "default"
    default = load_model("default")
    assert default.name == "default" and default.config == load_model().config


# -- downloads, the model list, the synthetic surface ---------------------------------------

def test_download_all_tries_every_model_and_sums_up(monkeypatch, capsys):
    tried = []

    def offline(url, relative_path, md5_prefix=None, timeout=30.0):
        tried.append(url)
        raise DensePoseError(f"cannot download {url}: offline", exit_code=download.OFFLINE_EXIT_CODE)

    monkeypatch.setattr("densepose_torch.checkpoint.cached_download", offline)
    assert main(["download", "all"]) == download.OFFLINE_EXIT_CODE
    assert tried == [model.url for model in ZOO]
    err = capsys.readouterr().err
    assert f"{len(ZOO)} of {len(ZOO)} failed" in err and all(model.url in err for model in ZOO)


def test_models_lists_a_file_with_the_wrong_checksum_as_corrupt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENSEPOSE_TORCH_CACHE", str(tmp_path))
    damaged, absent = ZOO[1], ZOO[2]
    (tmp_path / damaged.full_name).mkdir(parents=True)
    (tmp_path / damaged.full_name / damaged.file_name).write_bytes(b"a truncated download")
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "corrupt" in rows[damaged.name]
    assert rows[absent.name].rstrip().endswith("-")


def test_a_synthetic_set_is_evaluated_on_its_own_surface(capsys):
    assert surface_for({"info": {"description": SYNTHETIC_DESCRIPTION}}, None) == "synthetic"
    assert "synthetic body surface" in capsys.readouterr().err
    assert surface_for({"info": {"description": "DensePose-COCO"}}, None) == "official"
    assert surface_for({"info": {"description": SYNTHETIC_DESCRIPTION}}, "none") == "none"
