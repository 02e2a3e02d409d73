"""The HTTP service under load: N concurrent POST /v1/predict on loopback.

    python benchmarks/bench_service.py                                  # tiny random model: service overhead
    python benchmarks/bench_service.py --architecture R_50_FPN_s1x --queue-size 128
    python benchmarks/bench_service.py --checkpoint model.pth --requests 200 --concurrency 50

Starts `densepose serve` (the real sub-command, in a child process so that the client does not
share its interpreter) on a free loopback port, fires the requests at once, and prints throughput,
latency percentiles, batch sizes (from /metrics) and the answers by status. It fails (exit 1) if
any request is lost (no HTTP answer) or answered 5xx other than the documented 503 with
Retry-After (queue full, or no model time within the request timeout).

Weights: `tiny` is a ResNet-18 with 32-channel heads (the tests' model); a zoo architecture name
runs on random weights calibrated to find --detections people per image (as bench_inference.py);
--checkpoint times real weights.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from densepose_torch import ModelConfig, save_checkpoint
from densepose_torch.assets import example_image_path
from densepose_torch.io.images import read_image
from densepose_torch.modeling import build_model
from densepose_torch.service.server import free_port

TINY = ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64,
                   min_size_test=64, max_size_test=96, detections_per_image=3)


def make_checkpoint(architecture: str, detections: int, image: np.ndarray, folder: Path) -> Path:
    if architecture == "tiny":
        torch.manual_seed(0)
        model = build_model(TINY, "tiny")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_inference import random_model

        model = random_model(architecture, detections, image)
    return save_checkpoint(model, folder / f"{architecture}.pth")


def serve_command(args: argparse.Namespace, checkpoint: Path, port: int) -> list[str]:
    return [sys.executable, __file__, "--child-serve", "serve", "--model", str(checkpoint), "--port", str(port),
            "--queue-size", str(args.queue_size), "--batch-window-ms", str(args.batch_window_ms),
            "--request-timeout", str(args.request_timeout), "--precision", args.precision, "--log-level", "warning",
            *(["--max-batch", str(args.max_batch)] if args.max_batch else [])]


def child_serve(argv: list[str]) -> int:
    """Run the `serve` sub-command as `densepose serve` would (parser built from its module)."""
    from densepose_torch.cli import serve
    from densepose_torch.errors import DensePoseError

    parser = argparse.ArgumentParser(prog="densepose")
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except DensePoseError as error:
        print(f"densepose: error: {error}", file=sys.stderr)
        return error.exit_code


async def fire(base: str, body: bytes, requests: int, concurrency: int, output: str,
               timeout_s: float) -> list[tuple[int | str, float, bool]]:
    """(status or error name, seconds, has Retry-After) of each request, all started together."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(timeout_s)) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> tuple[int | str, float, bool]:
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post(f"/v1/predict?output={output}", content=body,
                                                 headers={"Content-Type": "image/png"})
                except httpx.HTTPError as error:
                    return type(error).__name__, time.perf_counter() - started, False
                return response.status_code, time.perf_counter() - started, "retry-after" in response.headers

        return await asyncio.gather(*(one() for _ in range(requests)))


def percentile(values: list[float], fraction: float) -> float:
    return float(np.percentile(values, fraction * 100)) if values else float("nan")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-serve":
        return child_serve(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="tiny", help="tiny, or a zoo architecture name on random weights")
    parser.add_argument("--checkpoint", type=Path, help="real weights to serve instead")
    parser.add_argument("--detections", type=int, default=3, help="people per image, for random zoo weights")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight at once")
    parser.add_argument("--size", type=int, default=512, help="long side of the test photo in pixels")
    parser.add_argument("--output", default="json", help="json, iuv, npz or a render preset")
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--max-batch", type=int, help="default: the server's (8 on a GPU, 1 on the CPU)")
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()

    photo = read_image(example_image_path())
    scale = args.size / max(photo.shape[:2])
    photo = np.asarray(Image.fromarray(photo).resize((round(photo.shape[1] * scale), round(photo.shape[0] * scale)), Image.BILINEAR))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    body = buffer.getvalue()

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or make_checkpoint(args.architecture, args.detections, photo, Path(folder))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(serve_command(args, checkpoint, port), env=os.environ | {"PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("bench_service: the server did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            # One request first, so that one-off start-up costs are not in the figures.
            httpx.post(f"{base}/v1/predict", content=body, timeout=300)
            started = time.perf_counter()
            # The server answers every request within its queue timeout plus one model call; a
            # client timeout well past that only catches a server that loses requests.
            client_timeout = 2 * args.request_timeout + 600
            answers = asyncio.run(fire(base, body, args.requests, args.concurrency, args.output, client_timeout))
            wall = time.perf_counter() - started
            metrics = httpx.get(f"{base}/metrics").text
        finally:
            server.terminate()
            server.wait(timeout=60)

    statuses: dict[int | str, int] = {}
    for status, _, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    ok = [seconds for status, seconds, _ in answers if status == 200]
    batches = metric(metrics, "densepose_batch_size_count")
    images = metric(metrics, "densepose_batch_size_sum")
    model_name = args.checkpoint or args.architecture
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.system()}")
    print(f"model {model_name}, photo {photo.shape[1]}x{photo.shape[0]}, output {args.output}, {args.requests} requests, "
          f"{args.concurrency} at once, queue {args.queue_size}, max batch {args.max_batch or 'auto'}, window {args.batch_window_ms:g} ms")
    print(f"answers: {', '.join(f'{status}: {count}' for status, count in sorted(statuses.items(), key=str))}")
    print(f"wall {wall:.2f} s, throughput {len(ok) / wall:.2f} answered images/s")
    if ok:
        print(f"latency of 200s: p50 {percentile(ok, 0.5):.3f} s, p95 {percentile(ok, 0.95):.3f} s, max {max(ok):.3f} s, "
              f"mean {statistics.mean(ok):.3f} s")
    busy = metric(metrics, "densepose_inference_seconds_sum")
    print(f"model calls {batches:.0f} for {images:.0f} images (mean batch {images / max(batches, 1):.2f}, warm-up request "
          f"included), {busy / max(images, 1):.3f} s of model time per image; the model was busy {busy:.1f} s")

    lost = [status for status, _, _ in answers if not isinstance(status, int)]
    bad = [status for status, _, retry in answers if isinstance(status, int) and status >= 500 and not (status == 503 and retry)]
    refused_without_retry = [status for status, _, retry in answers if status == 503 and not retry]
    if lost or bad or refused_without_retry or len(answers) != args.requests:
        print(f"FAILED: {len(lost)} lost, {len(bad)} undocumented 5xx", file=sys.stderr)
        return 1
    print(f"ok: none lost, no 5xx other than {statuses.get(503, 0)} documented 503 with Retry-After")
    return 0


if __name__ == "__main__":
    sys.exit(main())
