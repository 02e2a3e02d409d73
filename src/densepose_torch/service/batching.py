"""One model, many requests: a bounded queue drained by a single worker thread that runs the
model on batches.

The first image to arrive waits at most `window_s` for others (up to `max_batch`) and they go
go to `run_batch` together; under load the queue is never empty, so batches fill at once. A job's
payload is whatever `run_batch` takes (the service queues an image with its request's options).
Inference runs in the worker thread, never on the event loop. A full queue refuses at once (503); a request that waits longer than its timeout is withdrawn before the
model sees it (503), as is one whose client goes away -- once its batch has started it is seen
through.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import DensePoseError
from ..results import DensePoseResult
from .errors import ServiceError

RunBatch = Callable[[Sequence[Any]], list[DensePoseResult]]
# Weight of the newest batch in the running per-image time behind Retry-After.
_SMOOTHING = 0.2

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # compared by identity: the queue removes withdrawn jobs
class _Job:
    payload: Any
    future: Future


class BatchQueue:
    """Queue of payloads for `run_batch`, drained by one worker thread (`start` / `stop`).
    `on_batch(size, seconds)` is told about every model call (for metrics)."""

    def __init__(self, run_batch: RunBatch, capacity: int, max_batch: int, window_s: float,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None):
        self._run_batch = run_batch
        self._capacity = capacity
        self.max_batch = max_batch  # may change while running (the service sets it once the model's device is known)
        self._window_s = window_s
        self._on_batch = on_batch
        self._waiting: deque[_Job] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        self._busy = 0
        self._seconds_per_image = 1.0
        self._thread = threading.Thread(target=self._work, name="densepose-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in progress, fail the waiting ones, end the worker."""
        with self._changed:
            self._stopping = True
            abandoned = list(self._waiting)
            self._waiting.clear()
            self._changed.notify_all()
        for job in abandoned:
            job.future.set_exception(ServiceError(503, "the server is shutting down"))
        self._thread.join()

    @property
    def depth(self) -> int:
        """Images waiting plus images in the model now."""
        with self._changed:
            return len(self._waiting) + self._busy

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained, for a Retry-After header."""
        return max(1, math.ceil(self.depth * self._seconds_per_image))

    def submit(self, payload: Any) -> _Job:
        """Queue one payload; its job's Future gets the result. ServiceError 503 when the queue is full."""
        job = _Job(payload, Future())
        with self._changed:
            if self._stopping:
                raise ServiceError(503, "the server is shutting down")
            full = len(self._waiting) >= self._capacity
            if not full:
                self._waiting.append(job)
                self._changed.notify_all()
        if full:
            raise ServiceError(503, f"the server is busy ({self._capacity} images queued); retry later", self.retry_after_s())
        return job

    def withdraw(self, job: _Job) -> bool:
        """Take a job out of the queue; False if the model already has it."""
        with self._changed:
            try:
                self._waiting.remove(job)
            except ValueError:
                return False
        job.future.cancel()
        return True

    async def predict(self, payload: Any, timeout_s: float) -> DensePoseResult:
        """The result for one payload, awaited without blocking the event loop."""
        job = self.submit(payload)
        waiting = asyncio.wrap_future(job.future)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except asyncio.TimeoutError:
            if self.withdraw(job):
                raise ServiceError(503, f"no model time within {timeout_s:g} s; retry later", self.retry_after_s()) from None
            return await waiting  # already in the model: it finishes shortly
        except asyncio.CancelledError:
            self.withdraw(job)  # nobody waits for it any more
            raise

    def _next_batch(self) -> list[_Job]:
        """The next batch (empty when stopping): the oldest job, and those arriving within the window."""
        with self._changed:
            while not self._stopping:
                while not self._waiting and not self._stopping:
                    self._changed.wait()
                deadline = time.monotonic() + self._window_s
                while self._waiting and len(self._waiting) < self.max_batch and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                if self._waiting:  # else every job was withdrawn during the window: wait again
                    break
            batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            self._busy = len(batch)
        return batch

    def _work(self) -> None:
        while batch := self._next_batch():
            started = time.perf_counter()
            self._run(batch)
            seconds = time.perf_counter() - started
            with self._changed:
                self._busy = 0
            self._seconds_per_image += _SMOOTHING * (seconds / len(batch) - self._seconds_per_image)
            self._on_batch(len(batch), seconds)

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = self._run_batch([job.payload for job in jobs])
        except Exception as error:  # every failure must reach its requests
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
