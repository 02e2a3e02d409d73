"""The CUDA path, run by scripts/gpu_check.sh on a machine with a GPU (-m gpu); every test skips
without CUDA. Tolerances are the golden ones (see test_golden.py): the GPU's float32 convolutions
(IEEE, no TF32, deterministic cuDNN algorithms in the exact path) sum in another order than
oneDNN's, a rounding-level change like running the CPU on one thread instead of two.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densepose_torch import Predictor, load_model
from densepose_torch.cli import main
from densepose_torch.io.npz import read_npz
from densepose_torch.service.app import create_app
from densepose_torch.service.settings import ServiceSettings

from .test_fast_mode import FAST_LABEL_AGREEMENT, FAST_UV_P95, scenes  # noqa: F401 - fixture
from .test_golden import BOX_TOL, CASES, LABEL_AGREEMENT, SCORE_TOL, _assert_chart, _expected, _image
from .test_service import photo, png_of, started  # noqa: F401 - fixture

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

GPU_CASES = [(name, image) for name, image in CASES if image == "astronaut"]


@pytest.mark.parametrize("name,image", GPU_CASES)
def test_cuda_exact_path_matches_the_golden_cases(golden_dir, golden_checkpoint, name, image):
    expected = _expected(golden_dir, name, image)
    model = load_model(golden_checkpoint(name))  # on the CPU: the predictor copies it to the GPU
    predictor = Predictor(model, device="cuda")
    assert model.device.type == "cpu", "the caller's model stays where it was"
    result = predictor(_image(golden_dir, image), channel_order="bgr")
    assert len(result) == len(expected["scores"])
    np.testing.assert_allclose(result.boxes, expected["pred_boxes"], rtol=0, atol=BOX_TOL)
    np.testing.assert_allclose(result.scores, expected["scores"], rtol=0, atol=SCORE_TOL)
    for i in range(int(expected["num_det_results"])):
        _assert_chart(result.charts[i], expected, f"det{i}")


def test_two_predictors_on_two_devices_share_one_model(golden_checkpoint, golden_dir):
    model = load_model(golden_checkpoint("R_50_FPN_s1x"))
    on_gpu, on_cpu = Predictor(model, device="cuda"), Predictor(model, device="cpu")
    image = _image(golden_dir, "astronaut")
    a = on_gpu(image, channel_order="bgr", min_score=0.98)
    b = on_cpu(image, channel_order="bgr", min_score=0.98)
    assert model.device.type == "cpu" and on_gpu.model.device.type == "cuda"
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=BOX_TOL)


def test_batched_equals_single_on_cuda(golden_checkpoint, golden_dir):
    predictor = Predictor(load_model(golden_checkpoint("R_50_FPN_s1x")), device="cuda", min_score=0.98)
    image = _image(golden_dir, "astronaut")
    flipped = np.ascontiguousarray(image[:, ::-1])
    batched = predictor.batch([image, flipped], channel_order="bgr")
    for single, together in zip((predictor(image, channel_order="bgr"), predictor(flipped, channel_order="bgr")), batched):
        assert len(single) == len(together)
        np.testing.assert_allclose(single.boxes, together.boxes, rtol=0, atol=BOX_TOL)
        for a, b in zip(single.charts, together.charts):
            assert (a.labels == b.labels).mean() >= LABEL_AGREEMENT


def test_fast_mode_on_cuda_agrees_with_exact(scenes):  # noqa: F811
    model = load_model()
    exact, fast = Predictor(model, device="cuda", min_score=0.8), Predictor(model, device="cuda", precision="fast", min_score=0.8)
    agree, errors = [], []
    for path in scenes:
        boxes = exact(path).boxes
        for x, y in zip(exact.predict_boxes(path, boxes).charts, fast.predict_boxes(path, boxes).charts):
            same = x.labels == y.labels
            agree.append(same.ravel())
            errors.append(np.abs(x.uv - y.uv)[:, same & (x.labels > 0)].ravel())
    assert np.concatenate(agree).mean() >= FAST_LABEL_AGREEMENT
    assert np.percentile(np.concatenate(errors), 95) <= FAST_UV_P95


def test_cli_predict_on_cuda(tmp_path, golden_dir):
    out = tmp_path / "out"
    assert main(["predict", str(golden_dir / "images" / "astronaut.png"), "-o", str(out), "--device", "cuda",
                 "--precision", "fast", "--outputs", "npz", "--render", "viton"]) == 0
    assert (out / "viton" / "astronaut.png").is_file()
    assert read_npz(out / "npz" / "astronaut.npz").image_size == _image(golden_dir, "astronaut").shape[:2]


def test_service_on_cuda(photo):  # noqa: F811
    predictor = Predictor(load_model(), device="cuda", precision="fast")
    with started(create_app(ServiceSettings(model_label="default"), lambda: predictor)) as client:
        answer = client.post("/v1/predict?min_score=0", content=png_of(photo))
        assert answer.status_code == 200, answer.text
        assert client.get("/v1/models").json()["models"][0]["device"] == "cuda"
