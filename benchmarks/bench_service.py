"""The HTTP service under a burst and under sustained load, on loopback.

    python benchmarks/bench_service.py                                   # the embedded default model
    python benchmarks/bench_service.py --architecture R_50_FPN_s1x       # a zoo-sized model, random weights
    python benchmarks/bench_service.py --architecture tiny --scenarios burst --burst 200
    python benchmarks/bench_service.py --checkpoint model.pth --request-timeout 120

Starts `densepose serve` (the real sub-command, in a child process so that the client does not
share its interpreter) on a free loopback port and measures its speed with a few sequential
requests. Then, one after the other on the same server:

- burst: `--burst` requests (60) at the same moment;
- steady: requests arriving at random (Poisson) at 0.7 x the measured speed for `--duration` s;
- overload: the same at 2 x the measured speed, so that waits outgrow the request timeout (given a
  duration of more than twice that timeout) and the queue must shed.

For each it prints the answers by status, throughput, latency of the answered requests, the
Retry-After values sent with the 503s, and what `/metrics` saw in that time: requests shed by
reason, mean and p95 queue wait, the model's drain rate. It fails (exit 1) if any request is lost
(no HTTP answer) or answered 5xx other than the documented 503 with Retry-After.

Weights: `default` is the embedded model (`--model default`), `tiny` a ResNet-18 with 32-channel
heads (the tests' model); a zoo architecture name runs on random weights calibrated to find
--detections people per image (as bench_inference.py); --checkpoint serves real weights.
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from densepose_torch import ModelConfig, save_checkpoint
from densepose_torch.assets import example_image_path
from densepose_torch.io.images import read_image
from densepose_torch.modeling import build_model
from densepose_torch.service.metrics import LATENCY_BUCKETS_S, SHED_REASONS
from densepose_torch.service.server import free_port
from densepose_torch.service.settings import ServiceSettings

TINY = ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64,
                   min_size_test=64, max_size_test=96, detections_per_image=3)
SCENARIOS = ("burst", "steady", "overload")
LOADS = {"steady": 0.7, "overload": 2.0}  # arrival rate as a multiple of the measured speed


@dataclass(frozen=True)
class Answer:
    status: int | str  # HTTP status, or the client error's name when no answer came
    seconds: float
    retry_after: int | None


def example_photo(size: int) -> tuple[np.ndarray, bytes]:
    """The bundled photo with its long side resized to `size` pixels, as RGB pixels and as PNG."""
    photo = read_image(example_image_path())
    scale = size / max(photo.shape[:2])
    photo = np.asarray(Image.fromarray(photo).resize((round(photo.shape[1] * scale), round(photo.shape[0] * scale)), Image.BILINEAR))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    return photo, buffer.getvalue()


def model_argument(architecture: str, checkpoint: Path | None, detections: int, image: np.ndarray, folder: Path) -> str:
    """What `densepose serve --model` gets."""
    if checkpoint is not None:
        return str(checkpoint)
    if architecture == "default":
        return "default"
    if architecture == "tiny":
        torch.manual_seed(0)
        model = build_model(TINY, "tiny")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_inference import random_model

        model = random_model(architecture, detections, image)
    return str(save_checkpoint(model, folder / f"{architecture}.pth"))


def serve_command(args: argparse.Namespace, model: str, port: int) -> list[str]:
    return [sys.executable, __file__, "--child-serve", "serve", "--model", model, "--port", str(port),
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


async def send(client: httpx.AsyncClient, body: bytes, output: str) -> Answer:
    started = time.perf_counter()
    try:
        response = await client.post(f"/v1/predict?output={output}", content=body, headers={"Content-Type": "image/png"})
    except httpx.HTTPError as error:
        return Answer(type(error).__name__, time.perf_counter() - started, None)
    retry = response.headers.get("retry-after")
    return Answer(response.status_code, time.perf_counter() - started, int(retry) if retry else None)


async def burst(base: str, body: bytes, output: str, count: int, timeout_s: float) -> list[Answer]:
    """`count` requests started together."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(timeout_s)) as client:
        return await asyncio.gather(*(send(client, body, output) for _ in range(count)))


async def arrivals(base: str, body: bytes, output: str, rate: float, duration_s: float, timeout_s: float, seed: int) -> list[Answer]:
    """Requests arriving at random at `rate` per second for `duration_s`, whether or not the
    earlier ones have been answered (open loop, as independent users would)."""
    generator = np.random.default_rng(seed)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(timeout_s)) as client:
        tasks = []
        started = time.perf_counter()
        at = generator.exponential(1 / rate)
        while at < duration_s:
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            tasks.append(asyncio.ensure_future(send(client, body, output)))
            at += generator.exponential(1 / rate)
        return list(await asyncio.gather(*tasks))


def metric(text: str, name: str) -> float:
    """A series' value from a metrics page (labels included in `name`), 0 if absent."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_buckets(text: str) -> list[float]:
    return [metric(text, f'densepose_queue_wait_seconds_bucket{{le="{float(bound)!r}"}}') for bound in LATENCY_BUCKETS_S]


def bucket_quantile(before: str, after: str, fraction: float) -> str:
    """The wait bucket, "(low, high] s", holding the given quantile of the waits between two pages."""
    counts = [b - a for a, b in zip(wait_buckets(before), wait_buckets(after))]
    total = metric(after, "densepose_queue_wait_seconds_count") - metric(before, "densepose_queue_wait_seconds_count")
    for low, high, count in zip((0.0, *LATENCY_BUCKETS_S), LATENCY_BUCKETS_S, counts):
        if total and count >= fraction * total:
            return f"({low:g}, {high:g}] s"
    return f"over {LATENCY_BUCKETS_S[-1]:g} s"


def report(name: str, answers: list[Answer], wall: float, before: str, after: str) -> list[str]:
    statuses: dict[int | str, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    ok = [answer.seconds for answer in answers if answer.status == 200]
    retries = [answer.retry_after for answer in answers if answer.retry_after is not None]

    def delta(series: str) -> float:
        return metric(after, series) - metric(before, series)

    waits = delta("densepose_queue_wait_seconds_count")
    shed = {reason: int(delta(f'densepose_shed_total{{reason="{reason}"}}')) for reason in SHED_REASONS}
    lines = [f"[{name}] {len(answers)} requests in {wall:.1f} s: "
             + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items(), key=str))
             + f"; {len(ok) / wall:.2f} answered images/s"]
    if ok:
        lines.append(f"  latency of 200s: p50 {np.percentile(ok, 50):.2f} s, p95 {np.percentile(ok, 95):.2f} s, max {max(ok):.2f} s")
    if retries:
        lines.append(f"  Retry-After sent: median {statistics.median(retries):g} s, max {max(retries)} s")
    lines.append(f"  shed: {', '.join(f'{reason} {count}' for reason, count in shed.items())}")
    if waits:
        lines.append(f"  queue wait: mean {delta('densepose_queue_wait_seconds_sum') / waits:.2f} s, "
                     f"p95 in {bucket_quantile(before, after, 0.95)}; drain rate at the end "
                     f"{metric(after, 'densepose_queue_drain_images_per_second'):.2f} images/s")
    return lines


def problems(answers: list[Answer]) -> list[str]:
    lost = [a for a in answers if not isinstance(a.status, int)]
    bad = [a for a in answers if isinstance(a.status, int) and a.status >= 500 and not (a.status == 503 and a.retry_after)]
    return ([f"{len(lost)} lost"] if lost else []) + ([f"{len(bad)} undocumented 5xx"] if bad else [])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-serve":
        return child_serve(sys.argv[2:])
    defaults = ServiceSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="default", help="default, tiny, or a zoo architecture name on random weights")
    parser.add_argument("--checkpoint", type=Path, help="real weights to serve instead")
    parser.add_argument("--detections", type=int, default=3, help="people per image, for random zoo weights")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--burst", type=int, default=60, help="requests of the burst")
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of arrivals in steady and overload")
    parser.add_argument("--size", type=int, default=512, help="long side of the test photo in pixels")
    parser.add_argument("--output", default="json", help="json, iuv, npz or a render preset")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size)
    parser.add_argument("--max-batch", type=int, help="default: the server's (8 on a GPU, 1 on the CPU)")
    parser.add_argument("--batch-window-ms", type=float, default=defaults.batch_window_ms)
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout_s)
    parser.add_argument("--precision", choices=("exact", "fast"), default="exact")
    parser.add_argument("--seed", type=int, default=0, help="of the random arrival times")
    args = parser.parse_args()
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    photo, body = example_photo(args.size)
    # The server answers every request within its queue timeout plus one model call; a client
    # timeout well past that only catches a server that loses requests.
    client_timeout = 2 * args.request_timeout + 600

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.system()}")
    print(f"model {args.checkpoint or args.architecture} ({args.precision}), photo {photo.shape[1]}x{photo.shape[0]}, "
          f"output {args.output}, queue {args.queue_size}, request timeout {args.request_timeout:g} s, "
          f"max batch {args.max_batch or 'auto'}, window {args.batch_window_ms:g} ms")
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        model = model_argument(args.architecture, args.checkpoint, args.detections, photo, Path(folder))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(serve_command(args, model, port), env=os.environ | {"PYTHONUNBUFFERED": "1"})
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
            # One request for the one-off start-up costs, then five alone give the speed: one
            # image end to end (upload, decoding, model, answer), the most the server can take on
            # without queueing; concurrency overlaps a little of the work around the model.
            httpx.post(f"{base}/v1/predict", content=body, timeout=client_timeout)
            alone = []
            for _ in range(5):
                started = time.perf_counter()
                httpx.post(f"{base}/v1/predict", content=body, timeout=client_timeout).raise_for_status()
                alone.append(time.perf_counter() - started)
            speed = 1 / statistics.median(alone)
            print(f"one request alone: {statistics.median(alone):.2f} s end to end (median of 5), so {speed:.2f} images/s")
            for name in scenarios:
                before = httpx.get(f"{base}/metrics").text
                started = time.perf_counter()
                if name == "burst":
                    answers = asyncio.run(burst(base, body, args.output, args.burst, client_timeout))
                    label = f"burst of {args.burst}"
                else:
                    rate = LOADS[name] * speed
                    answers = asyncio.run(arrivals(base, body, args.output, rate, args.duration, client_timeout, args.seed))
                    label = f"{name}: {rate:.2f}/s ({LOADS[name]:g} x speed) for {args.duration:g} s"
                wall = time.perf_counter() - started
                print("\n".join(report(label, answers, wall, before, httpx.get(f"{base}/metrics").text)))
                failures += [f"{name}: {problem}" for problem in problems(answers)]
        finally:
            server.terminate()
            server.wait(timeout=60)

    if failures:
        print(f"FAILED: {'; '.join(failures)}", file=sys.stderr)
        return 1
    print("ok: none lost, no 5xx other than documented 503 with Retry-After")
    return 0


if __name__ == "__main__":
    sys.exit(main())
