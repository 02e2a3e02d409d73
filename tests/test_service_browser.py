"""The web page and /docs in a real headless browser (Debian's chromium driven by Playwright),
against a real uvicorn server on a loopback port, with every request off that server blocked:
the page must work offline. Skipped only where no chromium binary is installed."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from densepose_torch.io.coco_results import result_to_records
from densepose_torch.io.iuv_png import iuv_array
from densepose_torch.service.app import create_app
from densepose_torch.service.server import serve_in_background
from densepose_torch.service.settings import ServiceSettings

from .test_service import photo, png_of, tiny_predictor, wait_ready  # noqa: F401 - fixtures

CHROMIUM = next((path for path in ("/usr/bin/chromium", shutil.which("chromium") or "") if path and Path(path).is_file()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tiny_predictor):  # noqa: F811
    import httpx

    with serve_in_background(create_app(ServiceSettings(model_label="tiny"), lambda: tiny_predictor)) as base:
        wait_ready(lambda path: httpx.get(base + path))
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A page whose requests may reach the test server only; others are blocked and recorded,
    as are console errors."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.blocked = []
    page.console_errors = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith((server + "/", "blob:", "data:")):
            request_route.continue_()
        else:
            page.blocked.append(url)
            request_route.abort()

    context.route("**/*", route)
    page.on("console", lambda message: page.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    yield page
    context.close()


def test_pick_a_photo_see_the_render_and_download_the_arrays(page, server, tiny_predictor, photo, tmp_path):  # noqa: F811
    photo_path = tmp_path / "person.png"
    photo_path.write_bytes(png_of(photo))
    expected = tiny_predictor(photo).above(0.0)
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model-status').classList.contains('ready')")
    assert "tiny on cpu" in page.text_content("#model-status")
    page.fill("#min-score", "0")
    page.select_option("#preset", "segm")
    page.set_input_files("#photo-input", str(photo_path))  # choosing a photo runs the model
    page.wait_for_function("document.querySelector('#message').textContent.includes('found')")
    assert page.text_content("#message").startswith(f"{len(expected)} people found")
    page.wait_for_function("document.querySelector('#render').complete && document.querySelector('#render').naturalWidth > 0")
    size = page.evaluate("[document.querySelector('#render').naturalWidth, document.querySelector('#render').naturalHeight]")
    assert size == [photo.shape[1], photo.shape[0]]
    assert page.evaluate("document.querySelector('#photo').naturalWidth") == photo.shape[1]

    # Another preset re-renders.
    page.select_option("#preset", "viton")
    page.wait_for_function("document.querySelector('#render-caption').textContent.endsWith('viton')")

    downloads = {}
    for output in ("npz", "iuv", "json"):
        with page.expect_download() as info:
            page.click(f"[data-output={output}]")
        downloads[output] = info.value
    assert {name: download.suggested_filename for name, download in downloads.items()} == {
        "npz": "person.npz", "iuv": "person_IUV.png", "json": "person.json"}
    with np.load(io.BytesIO(Path(downloads["npz"].path()).read_bytes()), allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["I"], expected.to_dense().I)
    iuv = cv2.imread(downloads["iuv"].path(), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(iuv, iuv_array(expected.to_dense()))
    records = json.loads(Path(downloads["json"].path()).read_text())["detections"]
    assert records == result_to_records(expected, image_id=0)
    assert page.blocked == [] and page.console_errors == []


def test_errors_are_shown_on_the_page(page, server, tmp_path):
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("these are notes, not pixels")
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model-status').classList.contains('ready')")
    page.set_input_files("#photo-input", str(not_a_photo))
    page.wait_for_function("document.querySelector('#message').classList.contains('error')")
    assert page.text_content("#message") == "422: the upload is not an image (or not a format Pillow reads)"
    assert page.blocked == []


def test_swagger_ui_renders_offline(page, server):
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/v1/predict']")
    paths = page.eval_on_selector_all(".opblock-summary-path", "nodes => nodes.map(node => node.dataset.path)")
    assert {"/v1/predict", "/densepose", "/v1/models", "/metrics"} <= set(paths)
    assert page.blocked == [] and page.console_errors == []


def test_page_renders_as_pictured(page, server, photo, tmp_path):  # noqa: F811
    """The layout puts photo and render side by side (the docs screenshot shows it)."""
    photo_path = tmp_path / "person.png"
    Image.fromarray(photo).resize((photo.shape[1] * 4, photo.shape[0] * 4)).save(photo_path)
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model-status').classList.contains('ready')")
    page.set_input_files("#photo-input", str(photo_path))
    page.wait_for_function("document.querySelector('#render').naturalWidth > 0")
    photo_box, render_box = page.locator("#photo").bounding_box(), page.locator("#render").bounding_box()
    assert abs(photo_box["y"] - render_box["y"]) < 1 and render_box["x"] > photo_box["x"] + photo_box["width"]
