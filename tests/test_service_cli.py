"""`densepose serve` as a user runs it: start, answer, Ctrl-C; and its one-line start-up errors."""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from densepose_torch.cli import build_parser, serve
from densepose_torch.errors import DensePoseError
from densepose_torch.service.server import free_port

from .test_service import photo, png_of, tiny_predictor  # noqa: F401 - fixtures


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.fixture(scope="module")
def checkpoint(tiny_predictor, tmp_path_factory):  # noqa: F811
    from densepose_torch import save_checkpoint

    return save_checkpoint(tiny_predictor.model, tmp_path_factory.mktemp("serve_cli") / "tiny.pth")


def test_serve_answers_then_stops_on_ctrl_c(checkpoint, photo, tmp_path):  # noqa: F811
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "densepose_torch", "serve", "--model", str(checkpoint), "--port", str(port),
                               "--data-root", str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.ConnectError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        answer = httpx.post(f"{base}/v1/predict?min_score=0", content=png_of(photo), timeout=30)
        assert answer.status_code == 200 and answer.json()["model"] == "tiny"
        server.send_signal(signal.SIGINT)
        _, log = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, log
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log and "model tiny ready on cpu" in log
    assert "Traceback" not in log


def test_model_that_cannot_load_stops_the_server_with_one_line(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(DensePoseError) as stopped:
        serve.run(parse("--model", str(missing), "--port", str(free_port())))
    assert str(stopped.value) == f"the model failed to load: no such checkpoint file: {missing}"
    assert stopped.value.exit_code == 1


def test_busy_port_is_a_one_line_error(checkpoint):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DensePoseError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve.run(parse("--model", str(checkpoint), "--port", str(port)))


@pytest.mark.parametrize(("argv", "message"), [
    (["--data-root", "/nonexistent/folder"], "data root /nonexistent/folder is not a folder"),
    (["--port", "70000"], "--port must be between 1 and 65535"),
    (["--batch-window-ms", "5000"], "batch_window_ms must be between 0 and 1000"),
])
def test_bad_options_are_one_line_errors(argv, message):
    with pytest.raises(DensePoseError, match=message):
        serve.run(parse(*argv))


def test_limits_reach_the_settings(monkeypatch):
    seen = {}

    def capture(settings, load_predictor, on_load_failure):
        seen["settings"] = settings
        raise DensePoseError("stop here")

    monkeypatch.setattr("densepose_torch.service.app.create_app", capture)
    with pytest.raises(DensePoseError, match="stop here"):
        serve.run(parse("--max-upload-mb", "2.5", "--max-pixels", "1000", "--queue-size", "3", "--max-batch", "2",
                        "--request-timeout", "7", "--read-timeout", "4", "--batch-window-ms", "1"))
    settings = seen["settings"]
    assert (settings.max_upload_bytes, settings.max_pixels, settings.queue_size, settings.max_batch) == (2621440, 1000, 3, 2)
    assert (settings.request_timeout_s, settings.read_timeout_s, settings.batch_window_ms) == (7, 4, 1)
