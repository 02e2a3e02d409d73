"""`densepose serve`'s HTTP API, through FastAPI's test client and (for concurrency, timeouts and
slow clients) a real uvicorn server on a loopback port. The model is a tiny randomly initialised
one: what is checked is that the service returns exactly what the library computes."""
from __future__ import annotations

import base64
import io
import json
import re
import socket
import struct
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from densepose_torch import DensePoseError, ModelConfig, Predictor, load_model, save_checkpoint
from densepose_torch.assets import example_image_path
from densepose_torch.io.coco_results import decode_chart, result_to_records
from densepose_torch.io.images import read_image
from densepose_torch.io.iuv_png import iuv_array
from densepose_torch.modeling import build_model
from densepose_torch.render import PRESETS
from densepose_torch.service.app import create_app
from densepose_torch.service.server import serve_in_background
from densepose_torch.service.settings import ServiceSettings

with warnings.catch_warnings():
    # Starlette 1.x warns that its httpx-based test client will move to httpx2; it works as is.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# Three detections at most keeps every request fast (a random model scores ~70 boxes above 0.05).
TINY_MODEL = ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64,
                         min_size_test=64, max_size_test=96, detections_per_image=3)
PHOTO_SIZE = (72, 96)  # (height, width): not square, so a transposed answer shows


@pytest.fixture(scope="session")
def tiny_predictor(tmp_path_factory) -> Predictor:
    torch.manual_seed(0)
    path = save_checkpoint(build_model(TINY_MODEL, "tiny"), tmp_path_factory.mktemp("service_model") / "tiny.pth")
    return Predictor(load_model(path))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A small RGB photo of a person (the bundled public-domain astronaut)."""
    height, width = PHOTO_SIZE
    return np.asarray(Image.fromarray(read_image(example_image_path())).resize((width, height), Image.BILINEAR))


def png_of(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb_of_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_ready(get, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.02)


class started:
    """`with started(app) as client:` a TestClient whose model is loaded."""

    def __init__(self, app, **client_options):
        self.client = TestClient(app, **client_options)

    def __enter__(self) -> TestClient:
        self.client.__enter__()
        wait_ready(self.client.get)
        return self.client

    def __exit__(self, *exc_info):
        self.client.__exit__(*exc_info)


def assert_one_line_error(response, status: int, fragment: str = "") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    message = body["error"]
    assert "\n" not in message and "Traceback" not in message
    assert fragment in message, message
    return message


class GatedPredictor:
    """The tiny predictor, holding each model call until `gate` is set; records batch sizes."""

    def __init__(self, inner: Predictor):
        self.inner = inner
        self.model, self.config, self.device, self.precision = inner.model, inner.config, inner.device, inner.precision
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def batch(self, images, **selection):
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        self.batch_sizes.append(len(images))
        return self.inner.batch(images, **selection)


@pytest.fixture(scope="module")
def client(tiny_predictor):
    with started(create_app(ServiceSettings(model_label="tiny"), lambda: tiny_predictor)) as client:
        yield client


@pytest.fixture(scope="module")
def expected(tiny_predictor, photo):
    """The library's own result for the photo, every detection kept."""
    result = tiny_predictor(photo)
    assert len(result) > 0, "the tiny model must find something for these tests to mean anything"
    return result


def test_health_readiness_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok", "model": "ready"}
    assert client.get("/readyz").json() == {"status": "ready"}
    listing = client.get("/v1/models").json()
    model = listing["models"][0]
    assert (model["name"], model["status"], model["device"], model["precision"]) == ("tiny", "ready", "cpu", "exact")
    assert model["architecture"]["depth"] == 18
    assert model["max_batch"] == 1  # on the CPU, by default: batching would add latency, not speed
    assert set(PRESETS) <= set(listing["outputs"]) and {"json", "iuv", "npz"} <= set(listing["outputs"])


def test_json_is_the_librarys_result_as_coco_records(client, photo, expected):
    response = client.post("/v1/predict?min_score=0", content=png_of(photo), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["height"], body["width"]) == ("tiny", *PHOTO_SIZE)
    # Same model, same pixels, same encoder: the records are identical, floats included (JSON
    # round-trips Python floats exactly).
    assert body["detections"] == result_to_records(expected, image_id=0)
    assert response.headers["X-DensePose-Detections"] == str(len(expected))
    chart = decode_chart(body["detections"][0])
    assert chart.shape == (3, expected.charts[0].height, expected.charts[0].width)


def test_multipart_upload_gives_the_same_answer_as_a_raw_body(client, photo):
    raw = client.post("/v1/predict?min_score=0", content=png_of(photo))
    multipart = client.post("/v1/predict?min_score=0", files={"image": ("person.png", png_of(photo), "image/png")})
    assert multipart.status_code == 200, multipart.text
    records = multipart.json()["detections"]
    assert [record.pop("file_name") for record in records] == ["person.png"] * len(records)
    assert records == raw.json()["detections"]


def test_iuv_output_is_the_caffe2_iuv_png(client, photo, expected):
    response = client.post("/v1/predict?output=iuv&min_score=0.3", content=png_of(photo))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    decoded = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, iuv_array(expected.above(0.3).to_dense()))


def test_npz_output_holds_the_arrays(client, photo, expected):
    response = client.post("/v1/predict?output=npz&min_score=0", content=png_of(photo))
    assert response.status_code == 200
    assert 'filename="image.npz"' in response.headers["content-disposition"]
    with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
        maps = expected.to_dense()
        np.testing.assert_array_equal(archive["I"], maps.I)
        np.testing.assert_array_equal(archive["U"], maps.U)
        np.testing.assert_array_equal(archive["boxes"], expected.boxes)
        assert str(archive["format"]) == "densepose-torch-npz/1"


@pytest.mark.parametrize("preset", ["segm", "viton", "bbox", "smpl"])
def test_render_output_is_the_presets_picture(client, photo, expected, preset):
    response = client.post(f"/v1/predict?output={preset}&min_score=0", content=png_of(photo))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(rgb_of_png(response.content), PRESETS[preset](photo, expected))


def test_min_score_and_top_person_select_detections(client, photo, expected):
    threshold = float(np.median(expected.scores))
    kept = client.post(f"/v1/predict?min_score={threshold}", content=png_of(photo)).json()["detections"]
    assert [record["score"] for record in kept] == [float(s) for s in expected.scores if s > threshold]
    best = client.post("/v1/predict?min_score=0&top_person=true", content=png_of(photo)).json()["detections"]
    assert best == result_to_records(expected.select([int(np.argmax(expected.scores))]), image_id=0)
    assert client.post("/v1/predict", content=png_of(photo)).json()["detections"] == [], "random scores are below 0.8"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but whose pixel data is garbage: decoding it
    fails (422), so a 413 proves the size was checked from the header, before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"garbage") + _png_chunk(b"IEND", b"")


@pytest.mark.parametrize(("query", "content", "status", "fragment"), [
    ("output=nope", b"x", 422, "unknown output 'nope'"),
    ("min_score=1.5", b"x", 422, "min_score"),
    ("min_score=abc", b"x", 422, "min_score"),
    ("", b"", 422, "no image"),
    ("", b"this is not an image", 422, "not an image"),
    ("", png_of(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))[:1500], 422, "cannot be decoded"),
    ("", _png_header_only(9000, 9000), 413, "9000x9000 pixels, over the limit of 40000000"),
    # Past twice Pillow's own limit, Pillow refuses it when opening.
    ("", _png_header_only(100_000, 100_000), 413, "too large to decode safely"),
])
def test_bad_requests_get_one_line_errors(client, query, content, status, fragment):
    assert_one_line_error(client.post(f"/v1/predict?{query}", content=content), status, fragment)


def test_unknown_route_and_method_are_json_errors(client):
    assert_one_line_error(client.get("/v2/nothing"), 404)
    assert_one_line_error(client.get("/v1/predict"), 405)


def test_multipart_without_the_image_field_is_refused(client, photo):
    response = client.post("/v1/predict", files={"photo": ("p.png", png_of(photo), "image/png")})
    assert_one_line_error(response, 422, "'image'")


def test_size_and_pixel_limits(tiny_predictor, photo):
    noise = png_of(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))  # ~12 kB
    with started(create_app(ServiceSettings(max_upload_bytes=4000), lambda: tiny_predictor)) as client:
        assert_one_line_error(client.post("/v1/predict", content=noise), 413, "12")
        # Without Content-Length (chunked), the limit is applied while reading.
        assert_one_line_error(client.post("/v1/predict", content=iter([noise[:3000], noise[3000:]])), 413, "4000 bytes")
    # A real bomb: all-zero pixels compress ~1000:1, so ~25 kB claim 25 megapixels (75 MB decoded).
    bomb = png_of(np.zeros((5000, 5000, 3), np.uint8))
    height, width = PHOTO_SIZE
    with started(create_app(ServiceSettings(max_pixels=height * width - 1), lambda: tiny_predictor)) as client:
        assert_one_line_error(client.post("/v1/predict", content=png_of(photo)), 413, f"{width}x{height} pixels")
        assert_one_line_error(client.post("/v1/predict", content=bomb), 413, "5000x5000 pixels")
        assert client.post("/v1/predict", content=png_of(photo[:, :-1])).status_code == 200  # one pixel column less


def test_unexpected_failure_is_500_without_details(tiny_predictor, photo):
    class Broken(GatedPredictor):
        def batch(self, images):
            raise RuntimeError("secret internal detail")

    broken = Broken(tiny_predictor)
    with started(create_app(ServiceSettings(), lambda: broken), raise_server_exceptions=False) as client:
        message = assert_one_line_error(client.post("/v1/predict", content=png_of(photo)), 500)
        assert "secret" not in message
        assert client.get("/healthz").status_code == 200  # the service lives on


def test_model_still_loading_then_ready(tiny_predictor, photo):
    loaded = threading.Event()

    def slow_load():
        assert loaded.wait(30)
        return tiny_predictor

    with TestClient(create_app(ServiceSettings(), slow_load)) as client:
        assert client.get("/healthz").json() == {"status": "ok", "model": "loading"}
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
        response = client.post("/v1/predict", content=png_of(photo))
        assert_one_line_error(response, 503, "loading")
        assert int(response.headers["Retry-After"]) > 0
        loaded.set()
        wait_ready(client.get)
        assert client.post("/v1/predict", content=png_of(photo)).status_code == 200


def test_model_that_fails_to_load_is_reported(photo):
    failures = []

    def fail():
        raise DensePoseError("no such checkpoint file: missing.pth")

    with TestClient(create_app(ServiceSettings(), fail, failures.append)) as client:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        assert failures == ["no such checkpoint file: missing.pth"]
        readiness = client.get("/readyz")
        assert readiness.status_code == 503 and readiness.json() == {"status": "failed", "error": failures[0]}
        assert_one_line_error(client.post("/v1/predict", content=png_of(photo)), 503, "missing.pth")


def parse_metrics(text: str) -> dict[str, float]:
    """{'name{labels}': value} of a Prometheus text page, checking every line's syntax."""
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*\})? (\S+)$')
    values = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = sample.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        values[line.rsplit(" ", 1)[0]] = float(match.group(4))
    return values


def test_metrics_count_requests_latency_errors_and_batches(tiny_predictor, photo):
    with started(create_app(ServiceSettings(), lambda: tiny_predictor)) as client:
        for _ in range(3):
            assert client.post("/v1/predict?min_score=0", content=png_of(photo)).status_code == 200
        client.post("/v1/predict?output=bad", content=b"x")
        page = client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = parse_metrics(page.text)
    assert values['densepose_requests_total{endpoint="/v1/predict",method="POST",status="200"}'] == 3
    assert values['densepose_requests_total{endpoint="/v1/predict",method="POST",status="422"}'] == 1
    assert values['densepose_errors_total{endpoint="/v1/predict",status="422"}'] == 1
    assert values['densepose_request_duration_seconds_count{endpoint="/v1/predict"}'] == 4
    buckets = [value for key, value in values.items() if key.startswith('densepose_request_duration_seconds_bucket{endpoint="/v1/predict"')]
    assert buckets == sorted(buckets) and buckets[-1] == 4  # cumulative, ending at +Inf = count
    assert values["densepose_batch_size_count"] == 3 and values["densepose_batch_size_sum"] == 3
    assert values["densepose_queue_depth"] == 0 and values["densepose_model_ready"] == 1


def test_openapi_and_docs_work_offline(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/models", "/densepose", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    page = client.get("/docs").text
    references = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"url: '([^']+)'", page)
    assert references and not [ref for ref in references if "//" in ref], references
    for reference in references:
        assert client.get("/" + reference).status_code == 200, reference


def test_web_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page.text)


# --- A real server: concurrency, the bounded queue, batching, timeouts, slow clients ---------

def _post_photo(base: str, photo: np.ndarray) -> httpx.Response:
    return httpx.post(f"{base}/v1/predict?min_score=0", content=png_of(photo), timeout=30)


def _wait_for_depth(base: str, depth: int) -> None:
    deadline = time.monotonic() + 10
    while parse_metrics(httpx.get(f"{base}/metrics").text)["densepose_queue_depth"] != depth:
        assert time.monotonic() < deadline, f"queue never reached depth {depth}"
        time.sleep(0.01)


def test_queued_requests_run_as_one_batch(tiny_predictor, photo, expected):
    gated = GatedPredictor(tiny_predictor)
    settings = ServiceSettings(max_batch=4, batch_window_ms=50)
    with serve_in_background(create_app(settings, lambda: gated)) as base, ThreadPoolExecutor(4) as pool:
        wait_ready(lambda path: httpx.get(base + path))
        first = pool.submit(_post_photo, base, photo)
        assert gated.entered.wait(10)
        rest = [pool.submit(_post_photo, base, photo) for _ in range(3)]
        _wait_for_depth(base, 4)
        gated.gate.set()
        responses = [first.result(), *(future.result() for future in rest)]
    assert [response.status_code for response in responses] == [200] * 4
    assert gated.batch_sizes == [1, 3]
    for response in responses:
        assert response.json()["detections"] == result_to_records(expected, image_id=0)


def test_full_queue_answers_503_with_retry_after(tiny_predictor, photo):
    gated = GatedPredictor(tiny_predictor)
    settings = ServiceSettings(queue_size=2, max_batch=1, batch_window_ms=0)
    with serve_in_background(create_app(settings, lambda: gated)) as base, ThreadPoolExecutor(3) as pool:
        wait_ready(lambda path: httpx.get(base + path))
        accepted = [pool.submit(_post_photo, base, photo)]
        assert gated.entered.wait(10)
        accepted += [pool.submit(_post_photo, base, photo) for _ in range(2)]
        _wait_for_depth(base, 3)  # one in the model, two waiting: the queue is full
        refused = _post_photo(base, photo)
        gated.gate.set()
        statuses = [future.result().status_code for future in accepted]
        metrics = parse_metrics(httpx.get(f"{base}/metrics").text)
    assert_one_line_error(refused, 503, "busy")
    assert int(refused.headers["Retry-After"]) >= 1
    assert statuses == [200, 200, 200] and gated.batch_sizes == [1, 1, 1]
    assert metrics['densepose_shed_total{reason="queue_full"}'] == 1 and metrics['densepose_shed_total{reason="timeout"}'] == 0
    assert metrics["densepose_queue_capacity"] == 2 and metrics["densepose_queue_drain_images_per_second"] > 0
    assert metrics["densepose_queue_wait_seconds_count"] == 3  # the three that reached the model


def test_request_waiting_past_its_timeout_is_withdrawn(tiny_predictor, photo):
    gated = GatedPredictor(tiny_predictor)
    settings = ServiceSettings(max_batch=1, batch_window_ms=0, request_timeout_s=0.3)
    with serve_in_background(create_app(settings, lambda: gated)) as base, ThreadPoolExecutor(1) as pool:
        wait_ready(lambda path: httpx.get(base + path))
        first = pool.submit(_post_photo, base, photo)
        assert gated.entered.wait(10)
        late = _post_photo(base, photo)  # waits behind the held call, past 0.3 s
        gated.gate.set()
        assert first.result().status_code == 200  # already in the model: seen through
        assert _post_photo(base, photo).status_code == 200
        metrics = parse_metrics(httpx.get(f"{base}/metrics").text)
    assert metrics['densepose_shed_total{reason="timeout"}'] == 1 and metrics['densepose_shed_total{reason="queue_full"}'] == 0
    assert_one_line_error(late, 503, "no model time within 0.3 s")
    assert gated.batch_sizes == [1, 1], "the withdrawn request must never reach the model"


def test_client_that_hangs_up_while_queued_is_withdrawn(tiny_predictor, photo):
    gated = GatedPredictor(tiny_predictor)
    settings = ServiceSettings(max_batch=1, batch_window_ms=0)
    with serve_in_background(create_app(settings, lambda: gated)) as base, ThreadPoolExecutor(1) as pool:
        wait_ready(lambda path: httpx.get(base + path))
        first = pool.submit(_post_photo, base, photo)
        assert gated.entered.wait(10)
        host, port = base.removeprefix("http://").split(":")
        body = png_of(photo)
        with socket.create_connection((host, int(port)), timeout=10) as impatient:
            impatient.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            _wait_for_depth(base, 2)
        _wait_for_depth(base, 1)  # gone from the queue once the connection closed
        gated.gate.set()
        assert first.result().status_code == 200
        metrics = parse_metrics(httpx.get(f"{base}/metrics").text)
    assert gated.batch_sizes == [1]
    assert metrics['densepose_requests_total{endpoint="/v1/predict",method="POST",status="499"}'] == 1
    assert metrics['densepose_shed_total{reason="client_gone"}'] == 1


def test_client_giving_up_after_its_timeout_while_in_the_model_keeps_the_service_up(tiny_predictor, photo):
    gated = GatedPredictor(tiny_predictor)
    settings = ServiceSettings(max_batch=1, batch_window_ms=0, request_timeout_s=0.2)
    with serve_in_background(create_app(settings, lambda: gated)) as base:
        wait_ready(lambda path: httpx.get(base + path))
        host, port = base.removeprefix("http://").split(":")
        body = png_of(photo)
        with socket.create_connection((host, int(port)), timeout=10) as impatient:
            impatient.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            assert gated.entered.wait(10)
            time.sleep(0.5)  # past its request timeout, its image still in the model
        time.sleep(0.2)  # ...and then the client is gone
        gated.gate.set()
        assert _post_photo(base, photo).status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics = parse_metrics(httpx.get(f"{base}/metrics").text)
    assert gated.batch_sizes == [1, 1]
    assert metrics["densepose_model_ready"] == 1


class _WorkerKiller:
    """A predictor whose model call raises what no job handler catches (as an interpreter
    shutdown would), so that the model thread ends."""

    def __init__(self, inner: Predictor):
        self.model, self.config, self.device, self.precision = inner.model, inner.config, inner.device, inner.precision

    def batch(self, images, **selection):
        raise SystemExit("the model thread ends")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the worker's end, on purpose
def test_readyz_and_metrics_report_a_dead_model_worker(tiny_predictor, photo):
    with started(create_app(ServiceSettings(request_timeout_s=2), lambda: _WorkerKiller(tiny_predictor))) as client:
        assert client.get("/readyz").status_code == 200
        client.post("/v1/predict", content=png_of(photo))  # ends the worker; its own answer does not matter
        deadline = time.monotonic() + 10
        while (ready := client.get("/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "/readyz never noticed the worker was gone"
            time.sleep(0.02)
        refused = client.post("/v1/predict", content=png_of(photo))
        metrics = parse_metrics(client.get("/metrics").text)
    assert ready.status_code == 503 and ready.json() == {"status": "failed", "error": "the model worker has stopped"}
    assert_one_line_error(refused, 503, "the model worker has stopped")
    assert metrics["densepose_model_ready"] == 0


def test_slow_upload_is_cut_off_with_408(tiny_predictor, photo):
    settings = ServiceSettings(read_timeout_s=0.5)
    with serve_in_background(create_app(settings, lambda: tiny_predictor)) as base:
        wait_ready(lambda path: httpx.get(base + path))
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
            slow.sendall(b"\x89PNG\r\n\x1a\n")  # ...and then nothing more
            started_at = time.monotonic()
            answer = b""
            while chunk := slow.recv(65536):  # the server answers, then closes the connection
                answer += chunk
            waited = time.monotonic() - started_at
        # Meanwhile other clients are served as usual.
        assert _post_photo(base, photo).status_code == 200
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("the request body did not arrive within 0.5 s")
    assert 0.4 < waited < 5


def test_settings_are_validated(tmp_path):
    with pytest.raises(DensePoseError, match="queue_size"):
        ServiceSettings(queue_size=0)
    with pytest.raises(DensePoseError, match="not a folder"):
        ServiceSettings(data_root=tmp_path / "missing")
    assert (ServiceSettings().batch_size_for("cuda"), ServiceSettings().batch_size_for("cpu")) == (8, 1)
    assert ServiceSettings(max_batch=3).batch_size_for("cpu") == 3


def test_records_decode_like_the_coco_results_reader(client, photo, expected):
    """uv_data is a base64 RGB PNG: R = I, G = U*255, B = V*255, as io/coco_results encodes it."""
    record = client.post("/v1/predict?min_score=0", content=png_of(photo)).json()["detections"][0]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(record["uv_data"]))))
    np.testing.assert_array_equal(pixels[:, :, 0], expected.charts[0].labels)
