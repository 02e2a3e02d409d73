"""One model, many requests: a bounded queue drained by a single worker thread that runs the
model on batches.

The first image to arrive waits at most `window_s` for others (up to `max_batch`) and they go
through `Predictor.batch` together; under load the queue is never empty, so batches fill at once.
Inference runs in the worker thread, never on the event loop. A full queue refuses at once
(`QueueFull`, answered 503); a request that waits longer than its timeout is withdrawn before the
model sees it (503) -- once its batch has started it is seen through.
"""
from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import DensePoseError
from ..results import DensePoseResult
from .errors import ServiceError

RunBatch = Callable[[Sequence[np.ndarray]], list[DensePoseResult]]
# Weight of the newest batch in the running per-image time behind Retry-After.
_SMOOTHING = 0.2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    image: np.ndarray
    future: Future


_STOP = object()


class BatchQueue:
    """Queue of images for `run_batch`, drained by one worker thread (`start` / `stop`).
    `on_batch(size, seconds)` is told about every model call (for metrics)."""

    def __init__(self, run_batch: RunBatch, capacity: int, max_batch: int, window_s: float,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None):
        self._run_batch = run_batch
        self._jobs: queue.Queue = queue.Queue(maxsize=capacity)
        self._max_batch = max_batch
        self._window_s = window_s
        self._on_batch = on_batch
        self._seconds_per_image = 1.0
        self._busy = 0
        self._thread = threading.Thread(target=self._work, name="densepose-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in progress, fail the queued ones, end the worker."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ServiceError(503, "the server is shutting down"))
        self._jobs.put(_STOP)
        self._thread.join()

    @property
    def depth(self) -> int:
        """Images waiting plus images in the model now."""
        return self._jobs.qsize() + self._busy

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained, for a Retry-After header."""
        return max(1, math.ceil(self.depth * self._seconds_per_image))

    def submit(self, image: np.ndarray) -> Future:
        """Queue one image; its Future gets the result. ServiceError 503 when the queue is full."""
        job = _Job(image, Future())
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise ServiceError(503, f"the server is busy ({self._jobs.maxsize} images queued); retry later",
                               self.retry_after_s()) from None
        return job.future

    async def predict(self, image: np.ndarray, timeout_s: float) -> DensePoseResult:
        """The result for one image, awaited without blocking the event loop."""
        future = self.submit(image)
        waiting = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except asyncio.TimeoutError:
            if future.cancel():
                raise ServiceError(503, f"no model time within {timeout_s:g} s; retry later", self.retry_after_s()) from None
            return await waiting  # already in the model: it finishes shortly
        except asyncio.CancelledError:
            future.cancel()  # the client went away: skip the work if it has not started
            raise

    def _next_batch(self) -> tuple[list[_Job], bool]:
        """(jobs of the next batch, whether to stop after it)."""
        first = self._jobs.get()
        if first is _STOP:
            return [], True
        jobs = [first]
        deadline = time.monotonic() + self._window_s
        while len(jobs) < self._max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _work(self) -> None:
        stopping = False
        while not stopping:
            jobs, stopping = self._next_batch()
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self._busy = len(live)
            started = time.perf_counter()
            self._run(live)
            seconds = time.perf_counter() - started
            self._busy = 0
            self._seconds_per_image += _SMOOTHING * (seconds / len(live) - self._seconds_per_image)
            self._on_batch(len(live), seconds)

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = self._run_batch([job.image for job in jobs])
        except Exception as error:  # noqa: BLE001 - every failure must reach its requests
            if len(jobs) > 1:
                # One bad image must not fail the others of its batch: retry them one by one.
                for job in jobs:
                    self._run([job])
                return
            if not isinstance(error, DensePoseError):
                log.error("model call failed", exc_info=error)
            jobs[0].future.set_exception(error)
            return
        for job, result in zip(jobs, results):
            job.future.set_result(result)
