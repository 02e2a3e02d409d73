"""What the routes share, one per application: the predictor (loaded in a background thread at
startup), the batch queue in front of it, the metrics and the settings.

`create_app` keeps it in `app.state.service` and hands `ServiceState.lifespan` to FastAPI, so
startup starts the queue's worker and the model load, and shutdown stops both.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Sequence

import numpy as np
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from ..errors import DensePoseError
from ..inference import Predictor
from ..results import DensePoseResult
from ..surface import SmplSurface
from . import metrics
from .batching import BatchQueue
from .errors import ServiceError, one_line
from .settings import ServiceSettings

log = logging.getLogger(__name__)
RETRY_AFTER_LOADING_S = 5
# nginx's status for "client closed the connection before the answer": nobody reads it, but the
# metrics count it apart from the answers that were sent.
CLIENT_CLOSED_REQUEST = 499
LOADER_JOIN_TIMEOUT_S = 120.0


class ModelSlot:
    """The one shared predictor, loaded in a background thread; `status` says how far."""

    def __init__(self) -> None:
        self.status = "loading"  # then "ready" or "failed"
        self.error: str | None = None
        self.predictor: Predictor | None = None

    def require(self) -> Predictor:
        """The predictor, or ServiceError 503 while it loads (with Retry-After) or after it failed."""
        if self.predictor is None:
            if self.status == "failed":
                raise ServiceError(503, f"the model failed to load: {self.error}")
            raise ServiceError(503, "the model is still loading; retry later", RETRY_AFTER_LOADING_S)
        return self.predictor


@dataclass(frozen=True, eq=False)
class Prediction:
    """What one request asks of the model: an image, and which detections to keep (applied in
    the box predictor, so the DensePose head runs only on those)."""

    image: np.ndarray
    min_score: float
    top_person: bool


def run_predictions(predictor: Predictor, requests: Sequence[Prediction]) -> list[DensePoseResult]:
    """One predictor call per distinct (min_score, top_person) among the batch's requests."""
    results: list[DensePoseResult | None] = [None] * len(requests)
    groups: dict[tuple[float, bool], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault((request.min_score, request.top_person), []).append(index)
    for (min_score, best_only), members in groups.items():
        found = predictor.batch([requests[i].image for i in members], min_score=min_score, top_person=best_only)
        for index, result in zip(members, found):
            results[index] = result
    return results  # type: ignore[return-value]


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects. Only for after the body was read: from then on the
    server's next message is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ServiceState:
    """The model, its queue, the metrics and the settings of one application.

    `load_predictor` runs once, in a background thread, when the application starts; if it
    raises, `on_load_failure(message)` is called (the CLI stops the server)."""

    def __init__(self, settings: ServiceSettings, load_predictor: Callable[[], Predictor],
                 on_load_failure: Callable[[str], None]) -> None:
        self.settings = settings
        self.model = ModelSlot()
        self.metrics = metrics.Metrics()
        self.surface = SmplSurface()  # for the smpl output; loaded on its first request
        # Batches of one until the model's device is known (a CPU gains nothing from batching).
        self.queue = BatchQueue(self._run_batch, settings.queue_size, settings.batch_size_for("cpu"),
                                settings.batch_window_ms / 1000.0, self.metrics)
        self.page = importlib.resources.files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")
        self._load_predictor = load_predictor
        self._on_load_failure = on_load_failure

    @property
    def ready(self) -> bool:
        """The model is loaded and the queue's worker serves it."""
        return self.model.status == "ready" and self.queue.healthy

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """FastAPI's lifespan: the worker and the model load start with the application, and
        shutdown stops the worker and waits for the load."""
        self.queue.start()
        loader = threading.Thread(target=self._load, name="densepose-load", daemon=True)
        loader.start()
        try:
            yield
        finally:
            self.queue.stop()
            # Exiting while torch still loads in another thread aborts the interpreter.
            await run_in_threadpool(loader.join, LOADER_JOIN_TIMEOUT_S)

    async def predict(self, request: Request, wanted: Prediction) -> tuple[Predictor, DensePoseResult]:
        """The model's result for a request; withdrawn from the queue if the client hangs up first."""
        predictor = self.model.require()
        prediction = asyncio.ensure_future(self.queue.predict(wanted, self.settings.request_timeout_s))
        hang_up = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait({prediction, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
            abandoned = not prediction.done()
            if abandoned:
                prediction.cancel()  # withdraws the image from the queue
        if abandoned:
            raise ServiceError(CLIENT_CLOSED_REQUEST, "the client disconnected before its result was ready")
        return predictor, prediction.result()

    def _run_batch(self, requests: Sequence[Prediction]) -> list[DensePoseResult]:
        return run_predictions(self.model.require(), requests)

    def _load(self) -> None:
        """The loader thread: the predictor into the slot, or the failure reported."""
        started = time.perf_counter()
        try:
            predictor = self._load_predictor()
        except Exception as error:  # reported, then the server stops
            self._load_failed(error)
            return
        self.queue.max_batch = self.settings.batch_size_for(predictor.device.type)
        self.model.predictor, self.model.status = predictor, "ready"
        log.info("model %s ready on %s (%s, batches of up to %d) in %.1f s", predictor.model.name, predictor.device,
                 predictor.precision, self.queue.max_batch, time.perf_counter() - started)

    def _load_failed(self, error: Exception) -> None:
        # Our own errors explain themselves; anything else is a bug whose traceback the log needs.
        expected = isinstance(error, DensePoseError)
        message = str(error) if expected else f"{type(error).__name__}: {error}"
        log.error("model failed to load: %s", message, exc_info=None if expected else error)
        self.model.error, self.model.status = one_line(message), "failed"
        self._on_load_failure(message)
