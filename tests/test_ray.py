"""`densepose predict --ray` and the Ray Data callable class, on a local Ray instance.

The Ray runs are subprocesses (as a user runs them), each starting its own local instance; local
reference runs use one torch thread, as each Ray actor does with --ray-cpus 1, so that outputs can
be compared byte for byte (other thread counts change float rounding)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from densepose_torch.synthetic.scene import SceneGenerator

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

IMAGES = 24  # and one video of FRAMES frames
FRAMES = 6
INPUTS = IMAGES + 1


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    import cv2

    from densepose_torch.io.video import choose_encoder, video_writer

    folder = tmp_path_factory.mktemp("photos")
    generator = SceneGenerator(192)
    for k in range(IMAGES):
        cv2.imwrite(str(folder / f"scene_{k:02d}.jpg"), generator.render((77, k)).image[:, :, ::-1])
    encoder = choose_encoder()
    with video_writer(folder / f"walk{encoder.extension}", 10.0, encoder) as write:
        for k in range(FRAMES):
            write(generator.render((78, k)).image)
    return folder


def _densepose(*args: str, threads: int | None = None, wait: bool = True):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "densepose_torch", "predict", *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_run(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    done = _densepose(str(photos), "-o", str(out), "--render", "segm", "--outputs", "npz,json", threads=1)
    assert done.returncode == 0, done.stderr
    return out


def test_ray_outputs_are_the_local_runs_and_a_second_run_writes_nothing(photos, local_run, tmp_path):
    out = tmp_path / "ray"
    first = _densepose(str(photos), "-o", str(out), "--render", "segm", "--outputs", "npz,json", "--ray", "--ray-actors", "2",
                       "--batch-size", "3")
    assert first.returncode == 0, first.stderr
    assert f"{INPUTS} of {INPUTS} inputs done (0 already were)" in first.stderr and "inputs/s" in first.stderr
    expected = _files(local_run)
    # npz, json and a render per image; per video frame npz and json, the video's video.json and render; the run record
    assert len(expected) == 3 * IMAGES + 2 * FRAMES + 2 + 1
    assert _files(out) == expected
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    second = _densepose(str(photos), "-o", str(out), "--render", "segm", "--outputs", "npz,json", "--ray", "--ray-actors", "2")
    assert second.returncode == 0, second.stderr
    assert f"({INPUTS} already were)" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".densepose-run.json"} == \
        {p: t for p, t in stamps.items() if p.name != ".densepose-run.json"}


def _worker_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"PredictWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor's process in /proc")
def test_a_killed_actor_is_replaced_and_the_job_finishes_with_every_output_once(photos, local_run, tmp_path):
    out = tmp_path / "ray"
    run = _densepose(str(photos), "-o", str(out), "--render", "segm", "--outputs", "npz,json", "--ray", "--ray-actors", "2",
                     "--batch-size", "2", wait=False)
    killed = None
    deadline = time.monotonic() + 300
    try:
        while killed is None and time.monotonic() < deadline and run.poll() is None:
            written = list((out / "npz").glob("*.npz")) if (out / "npz").is_dir() else []
            workers = _worker_pids()
            if written and workers and len(written) < IMAGES - 4:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        _, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert killed is not None, "the job ended before a worker could be killed"
    assert run.returncode == 0, stderr
    assert _files(out) == _files(local_run)  # nothing missing, nothing half-written, no temporary file left


def test_without_ray_installed_the_extra_is_named(tmp_path, photos, monkeypatch, capsys):
    from densepose_torch.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert main(["predict", str(photos), "-o", str(tmp_path / "out"), "--ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["densepose: error: Ray is not installed: pip install 'densepose-torch[ray]'"]


def test_the_callable_class_turns_a_ray_dataset_of_images_into_results(photos):
    from densepose_torch import Predictor, load_model
    from densepose_torch.io.images import read_image
    from densepose_torch.io.npz import read_npz
    from densepose_torch.jobs.ray import RayBatchPredictor

    images = [read_image(p) for p in sorted(photos.glob("*.jpg"))[:6]]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        dataset = ray.data.from_items([{"image": image, "name": f"p{k}"} for k, image in enumerate(images)])
        arrays = dataset.map_batches(RayBatchPredictor, fn_constructor_kwargs={"threads": 1}, batch_size=4,
                                     compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1).take_all()
        files = dataset.map_batches(RayBatchPredictor, fn_constructor_kwargs={"output": "npz", "threads": 1}, batch_size=4,
                                    compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1).take_all()
    finally:
        ray.shutdown()
    predictor = Predictor(load_model(), min_score=0.8)
    by_name = {row["name"]: row for row in arrays}
    assert sorted(by_name) == [f"p{k}" for k in range(6)] and all("image" not in row for row in arrays)
    found = 0
    for k, image in enumerate(images):
        expected = predictor(image)
        row = by_name[f"p{k}"]
        assert np.asarray(row["boxes"]).reshape(-1, 4).shape[0] == len(expected)
        np.testing.assert_allclose(np.asarray(row["boxes"]).reshape(-1, 4), expected.boxes, atol=0.05)  # other thread count
        maps = expected.to_dense()
        assert np.asarray(row["I"]).shape == maps.I.shape and (np.asarray(row["I"]) == maps.I).mean() > 0.99
        found += len(expected)
    assert found > 0
    for row in files:
        path = Path(photos.parent) / f"{row['name']}.npz"
        path.write_bytes(row["npz"])
        assert len(read_npz(path)) == len(by_name[row["name"]]["scores"])


def _compare(*args: str, threads: int | None = None):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, "-m", "densepose_torch", "compare", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_compare_on_ray_fills_the_same_cache_and_resumes_from_it(photos, tmp_path):
    import importlib.resources

    from densepose_torch.checkpoint import DEFAULT_MODEL_FILE

    copy = tmp_path / "copy_of_default.pth"
    copy.write_bytes((importlib.resources.files("densepose_torch.assets") / DEFAULT_MODEL_FILE).read_bytes())
    common = ["--models", "default", str(copy), "--images", str(photos), "--limit", "6", "--render", "segm"]
    local = _compare(*common, "-o", str(tmp_path / "local"), threads=1)
    assert local.returncode == 0, local.stderr
    first = _compare(*common, "-o", str(tmp_path / "ray"), "--ray", "--ray-actors", "2")
    assert first.returncode == 0, first.stderr
    assert "2 of 2 models compared" in first.stderr

    def results(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "cache").rglob("*.npz"))}

    expected = results(tmp_path / "local")
    assert len(expected) == 12 and results(tmp_path / "ray") == expected
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "cache").rglob("*.json") if p.name != "model.json"}
    again = _compare(*common, "-o", str(tmp_path / "ray"), "--ray", "--ray-actors", "2")
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # every pair came from the cache
