"""Chaos on loopback: hostile and clumsy clients mixed with normal ones, then a health check.

    python benchmarks/bench_chaos.py                       # one minute, the tests' tiny model
    python benchmarks/bench_chaos.py --duration 300 --architecture default

Starts `densepose serve --data-root` (the real sub-command, in a child process) on a free loopback
port and, for `--duration` seconds, runs these clients side by side:

- normal: POST /v1/predict with a photo; POST /densepose (the legacy endpoint) writing renders;
- quitters: a complete request whose connection is closed without reading the answer, or closed
  halfway through the body (both endpoints);
- slow uploads: a body trickled a few bytes a second, slower than the server's --read-timeout;
- garbage: random bytes as an image, a decompression-bomb PNG, broken JSON and paths that climb out
  of the data root on the legacy endpoint, random bytes instead of HTTP.

Afterwards it checks that the server still answers a normal request of each endpoint, that its
memory (RSS) after the chaos is within --max-rss-growth-mb of what it was after warming up, and that
the data root holds no half-written file (no temporary file; every render decodes completely). It
prints the answers by client kind, the RSS over time and what /metrics counted, and exits 1 when a
check fails or a well-formed request got an undocumented answer (a lost answer, or 5xx other
than 503 with Retry-After).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import child_serve, example_photo, metric, model_argument  # noqa: E402

from densepose_torch.service.metrics import SHED_REASONS  # noqa: E402
from densepose_torch.service.server import free_port  # noqa: E402

READ_TIMEOUT_S = 5  # the server's --read-timeout here: slow uploads must outlast it
PHOTOS = 4  # photos in the data root for the legacy endpoint


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A few hundred bytes whose header declares width x height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    """Outcomes by client kind, and the undocumented ones of requests that were well formed."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter] = defaultdict(Counter)
        self.problems: list[str] = []

    def answer(self, kind: str, response: httpx.Response | None, error: Exception | None, expected: tuple[int, ...]) -> None:
        if response is None:
            self.outcomes[kind][type(error).__name__] += 1
            self.problems.append(f"{kind}: no answer ({type(error).__name__})")
            return
        status = response.status_code
        self.outcomes[kind][status] += 1
        documented_busy = status == 503 and "retry-after" in response.headers
        if status not in expected and not documented_busy:
            self.problems.append(f"{kind}: {status} {response.text[:120]!r}")


def legacy_body(name: int, client: str) -> dict[str, str]:
    return {"DenseRootDir": "out", "ClientID": client, "FileName": f"{name:05d}", "ImagePath": "photos"}


async def raw_request(port: int, head: bytes, body: bytes, *, send_fraction: float = 1.0, read: bool = False,
                      trickle_s: float = 0.0) -> bytes:
    """Send a request by hand: all of it or a fraction, at once or 16 bytes every `trickle_s`;
    read the answer or hang up. What came back (b"" when hung up on)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(reader.read()) if read else None
    try:
        writer.write(head)
        part = body[: int(len(body) * send_fraction)]
        if trickle_s:
            for start in range(0, len(part), 16):
                if answer is not None and answer.done():
                    break  # the server answered (and closed) before the body was complete
                writer.write(part[start : start + 16])
                await writer.drain()
                await asyncio.sleep(trickle_s)
        else:
            writer.write(part)
            await writer.drain()
    except ConnectionError:
        pass
    try:
        return await asyncio.wait_for(answer, timeout=READ_TIMEOUT_S * 4) if answer is not None else b""
    except (ConnectionError, asyncio.TimeoutError):
        return b""
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


def status_of(answer: bytes) -> str:
    """The status code of a raw HTTP answer, or "closed" when the server closed without one."""
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"


def http_head(path: str, content_type: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def chaos(base: str, port: int, photo: bytes, duration_s: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    stop_at = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(300)) as client:

        async def post(kind: str, expected: tuple[int, ...], path: str, **kwargs) -> None:
            try:
                response = await client.post(path, **kwargs)
            except httpx.HTTPError as error:
                tally.answer(kind, None, error, expected)
            else:
                tally.answer(kind, response, None, expected)

        async def loop(kind: str, action, pause_s: float) -> None:
            while time.monotonic() < stop_at:
                await action()
                await asyncio.sleep(rng.uniform(0, pause_s))

        async def normal() -> None:
            await post("normal predict", (200,), "/v1/predict", content=photo, headers={"Content-Type": "image/png"})

        async def legacy() -> None:
            body = legacy_body(rng.randrange(PHOTOS), rng.choice(["A", "B"]))
            await post("normal legacy", (200,), "/densepose", json=body)

        async def quitter() -> None:
            if rng.random() < 0.5:
                body = json.dumps(legacy_body(rng.randrange(PHOTOS), "Q")).encode()
                head = http_head("/densepose", "application/json", len(body))
            else:
                body, head = photo, http_head("/v1/predict", "image/png", len(photo))
            await raw_request(port, head, body, send_fraction=rng.choice([1.0, 0.5]))
            tally.outcomes["quitter"]["hung up"] += 1

        async def slow() -> None:
            answer = await raw_request(port, http_head("/v1/predict", "image/png", len(photo)), photo, read=True, trickle_s=0.5)
            tally.outcomes["slow upload"][status_of(answer)] += 1

        async def garbage() -> None:
            choice = rng.randrange(5)
            if choice == 0:
                await post("garbage image", (400, 413, 415, 422), "/v1/predict", content=rng.randbytes(rng.randrange(1, 50000)),
                           headers={"Content-Type": "image/png"})
            elif choice == 1:
                await post("bomb", (413,), "/v1/predict", content=png_bomb(), headers={"Content-Type": "image/png"})
            elif choice == 2:
                await post("broken json", (400, 422), "/densepose", content=rng.randbytes(rng.randrange(1, 300)),
                           headers={"Content-Type": "application/json"})
            elif choice == 3:
                body = legacy_body(0, "../../escape") if rng.random() < 0.5 else {**legacy_body(0, "A"), "ImagePath": "/etc"}
                await post("path escape", (403,), "/densepose", json=body)
            else:
                # Ended as a header block, so that the server parses it at once rather than waiting.
                answer = await raw_request(port, rng.randbytes(rng.randrange(1, 2000)) + b"\r\n\r\n", b"", read=True)
                tally.outcomes["not http"][status_of(answer)] += 1

        clients = [loop("normal", normal, 1.0) for _ in range(3)] + [loop("legacy", legacy, 1.0) for _ in range(2)]
        clients += [loop("quitter", quitter, 0.5) for _ in range(2)] + [loop("slow", slow, 0.5) for _ in range(4)]
        clients += [loop("garbage", garbage, 0.1) for _ in range(3)]
        await asyncio.gather(*clients)


def wait_until_ready(base: str, server: subprocess.Popen, timeout_s: float = 300) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def half_written(root: Path) -> list[str]:
    """Temporary files left behind and renders that do not decode completely."""
    found = [str(path.relative_to(root)) for path in root.rglob(".*")]
    for render in (root / "out").rglob("*.jpg"):
        try:
            with Image.open(render) as picture:
                picture.load()
        except OSError:
            found.append(str(render.relative_to(root)))
    return found


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-serve":
        return child_serve(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="tiny", help="tiny, default, or a zoo architecture name on random weights")
    parser.add_argument("--checkpoint", type=Path, help="real weights to serve instead")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--size", type=int, default=256, help="long side of the test photos in pixels")
    parser.add_argument("--max-rss-growth-mb", type=float, default=300.0,
                        help="growth of the server's memory from after warm-up to after the chaos that fails the run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    photo, body = example_photo(args.size)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, {platform.system()}")
    tally = Tally()
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        (root / "photos").mkdir(parents=True)
        for index in range(PHOTOS):
            Image.fromarray(np.roll(photo, 7 * index, axis=1)).save(root / "photos" / f"{index:05d}.jpg", quality=95)
        model = model_argument(args.architecture, args.checkpoint, 3, photo, Path(folder))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, __file__, "--child-serve", "serve", "--model", model, "--port", str(port),
                   "--data-root", str(root), "--read-timeout", str(READ_TIMEOUT_S), "--request-timeout", "30",
                   "--queue-size", "16", "--max-upload-mb", "2", "--log-level", "critical"]
        server = subprocess.Popen(command, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        try:
            if not wait_until_ready(base, server):
                print("bench_chaos: the server did not become ready", file=sys.stderr)
                return 1
            for index in range(PHOTOS):  # warm-up: both endpoints, every photo once
                httpx.post(f"{base}/v1/predict", content=body, headers={"Content-Type": "image/png"}, timeout=300).raise_for_status()
                httpx.post(f"{base}/densepose", json=legacy_body(index, "A"), timeout=300).raise_for_status()
            rss = [(0.0, rss_mb(server.pid))]
            started = time.monotonic()

            async def run() -> None:
                async def sample() -> None:
                    while time.monotonic() - started < args.duration:
                        await asyncio.sleep(min(5.0, args.duration / 6))
                        rss.append((time.monotonic() - started, rss_mb(server.pid)))

                await asyncio.gather(chaos(base, port, body, args.duration, args.seed, tally), sample())

            asyncio.run(run())
            wall = time.monotonic() - started
            # Let the queue empty, then the server must answer normally.
            deadline = time.monotonic() + 120
            while metric(httpx.get(f"{base}/metrics").text, "densepose_queue_depth") and time.monotonic() < deadline:
                time.sleep(0.2)
            after = rss_mb(server.pid)
            ready = httpx.get(f"{base}/readyz").status_code
            predict = httpx.post(f"{base}/v1/predict", content=body, headers={"Content-Type": "image/png"}, timeout=300).status_code
            legacy = httpx.post(f"{base}/densepose", json=legacy_body(0, "after"), timeout=300).status_code
            page = httpx.get(f"{base}/metrics").text
            leftovers = half_written(root)
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=60)

    print(f"chaos for {wall:.0f} s with the {args.checkpoint or args.architecture} model, photo {photo.shape[1]}x{photo.shape[0]}")
    for kind, outcomes in sorted(tally.outcomes.items()):
        print(f"  {kind}: {', '.join(f'{status}: {count}' for status, count in sorted(outcomes.items(), key=str))}")
    print("  shed: " + ", ".join(f"{reason} {metric(page, f'densepose_shed_total{{reason={chr(34)}{reason}{chr(34)}}}'):.0f}"
                                  for reason in SHED_REASONS))
    print("RSS (MB) at seconds after warm-up: " + ", ".join(f"{at:.0f}: {mb:.0f}" for at, mb in rss) + f"; after draining {after:.0f}")
    print(f"afterwards: server {'running' if alive else 'GONE'}, /readyz {ready}, /v1/predict {predict}, /densepose {legacy}; "
          f"half-written files: {len(leftovers)}")
    growth = after - rss[0][1]
    if not alive or (ready, predict, legacy) != (200, 200, 200):
        failures.append("the server does not answer normally after the chaos")
    if growth > args.max_rss_growth_mb:
        failures.append(f"memory grew {growth:.0f} MB (limit {args.max_rss_growth_mb:g})")
    if leftovers:
        failures.append(f"half-written files: {', '.join(leftovers[:5])}")
    failures += tally.problems[:10]
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"ok: memory grew {growth:+.0f} MB, nothing half-written, every well-formed request answered as documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
