"""`densepose serve`: the HTTP service (web page, JSON/PNG/npz API, legacy path endpoint)."""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ..errors import DensePoseError
from ..service.settings import DEFAULT_MAX_CONNECTIONS, GPU_MAX_BATCH, ServiceSettings
from .arguments import add_backend_argument, add_flip_arguments, add_model_file_arguments, add_precision_argument, model_choice, positive

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

EXAMPLES = """\
examples:
  densepose serve --model R_50_FPN_s1x                 # http://127.0.0.1:8081/ in a browser
  curl -F image=@photo.jpg 'http://127.0.0.1:8081/v1/predict?output=segm' -o segm.png
  curl --data-binary @photo.jpg 'http://127.0.0.1:8081/v1/predict?output=npz' -o photo.npz
  densepose serve --model R_50_FPN_s1x --data-root /srv/datasets   # enables POST /densepose

The service listens on loopback only unless --host says otherwise; it has no authentication,
so put it behind a reverse proxy before exposing it. API reference: /docs on the running server.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = ServiceSettings()
    parser = subparsers.add_parser(
        "serve", help="serve DensePose over HTTP: web page, JSON/PNG/npz API, legacy POST /densepose",
        description="Serve DensePose over HTTP (FastAPI + uvicorn). Needs the serve extra: "
                    "pip install 'densepose-torch[serve]'.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    parser.add_argument("--model", metavar="NAME|PATH", help="zoo model name, checkpoint file, or default (the embedded model, the default)")
    add_model_file_arguments(parser)
    add_flip_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    add_precision_argument(parser)
    parser.add_argument("--data-root", metavar="DIR", type=Path,
                        help="the only folder POST /densepose may read and write (default: that endpoint is off)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-upload-mb", type=positive(float), default=defaults.max_upload_bytes / 2**20,
                        help=f"largest request body in MiB (default {defaults.max_upload_bytes / 2**20:g}); larger: 413")
    limits.add_argument("--max-pixels", type=positive(int), default=defaults.max_pixels,
                        help=f"largest image, width x height (default {defaults.max_pixels}); larger: 413, checked before decoding")
    limits.add_argument("--queue-size", type=positive(int), default=defaults.queue_size,
                        help=f"images waiting for the model (default {defaults.queue_size}); when full: 503 with Retry-After")
    limits.add_argument("--max-batch", type=positive(int),
                        help=f"images per model call (default {GPU_MAX_BATCH} on a GPU, 1 on the CPU, where batching adds latency, not speed)")
    limits.add_argument("--batch-window-ms", type=float, default=defaults.batch_window_ms,
                        help=f"how long a request waits for others to batch with (default {defaults.batch_window_ms:g})")
    limits.add_argument("--request-timeout", type=positive(float), default=defaults.request_timeout_s, metavar="SECONDS",
                        help=f"longest wait for the model before 503 (default {defaults.request_timeout_s:g})")
    limits.add_argument("--read-timeout", type=positive(float), default=defaults.read_timeout_s, metavar="SECONDS",
                        help=f"longest time a client may take to send its upload before 408 (default {defaults.read_timeout_s:g})")
    limits.add_argument("--max-connections", type=positive(int), default=DEFAULT_MAX_CONNECTIONS,
                        help=f"open connections before uvicorn answers 503 (default {DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..service.app import create_app
        from ..service.server import uvicorn_config
    except ImportError as error:
        raise DensePoseError(f"densepose serve needs the serve extra ({error.name} is missing): "
                             "pip install 'densepose-torch[serve]'") from None
    from ..jobs.predict import build_predictor

    if not 0 < args.port < 65536:
        raise DensePoseError(f"--port must be between 1 and 65535, not {args.port}")
    settings = ServiceSettings(
        model_label=args.model or "default", data_root=args.data_root, max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels, queue_size=args.queue_size, max_batch=args.max_batch, batch_window_ms=args.batch_window_ms,
        request_timeout_s=args.request_timeout, read_timeout_s=args.read_timeout,
    )
    failures: list[str] = []
    server: uvicorn.Server | None = None

    def stop_on_failure(message: str) -> None:
        failures.append(message)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, functools.partial(build_predictor, model_choice(args), args.device, args.precision), stop_on_failure)
    config = uvicorn_config(app, args.host, args.port, args.max_connections, args.log_level)
    server = uvicorn.Server(config)
    try:
        # Bound before the application starts, so that a busy port stops us before the model loads.
        sock = config.bind_socket()
    except SystemExit:  # uvicorn has logged why
        raise DensePoseError(f"cannot listen on {args.host}:{args.port}") from None
    if args.host not in LOOPBACK_HOSTS:
        print(f"densepose: listening on {args.host}, reachable from other machines; the service has no authentication",
              file=sys.stderr)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it has already handled by shutting down cleanly
    if failures:
        raise DensePoseError(f"the model failed to load: {failures[0]}")
    return 0
