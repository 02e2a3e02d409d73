"""Running the application with uvicorn: in the foreground (`densepose serve`) or in a background
thread (tests, benchmarks, notebooks). Both use the same connection limits."""
from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
from typing import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from ..errors import DensePoseError
from .settings import DEFAULT_MAX_CONNECTIONS

# A connection idle this long between requests is closed, so idle clients hold nothing.
KEEP_ALIVE_S = 5


def uvicorn_config(app: FastAPI, host: str, port: int, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                   log_level: str = "info", configure_logging: bool = True) -> uvicorn.Config:
    """Uvicorn settings of the service: past `max_connections` open connections (and requests)
    uvicorn answers 503 at once. `configure_logging` sets up uvicorn's log format for uvicorn's
    and our own loggers (for a process of its own; a host program keeps its logging as it is)."""
    logging_config = None
    if configure_logging:
        logging_config = copy.deepcopy(LOGGING_CONFIG)
        logging_config["loggers"]["densepose_torch"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=logging_config,
                          access_log=configure_logging, timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=max_connections,
                          server_header=False)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int | None = None,
                        max_connections: int = DEFAULT_MAX_CONNECTIONS, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve `app` from a thread; yields its base URL ("http://127.0.0.1:PORT"), stops on exit.
    The host program's logging is left as it is."""
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn_config(app, host, port, max_connections, configure_logging=False))
    # uvicorn installs signal handlers only in the main thread; a background server has none.
    thread = threading.Thread(target=server.run, name="densepose-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise DensePoseError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
