"""One model, many requests: a bounded queue drained by a single worker thread that runs the
model on batches.

The first image to arrive waits at most `window_s` for others (up to `max_batch`) and they go
to `run_batch` together; under load the queue is never empty, so batches fill at once. A job's
payload is whatever `run_batch` takes (the service queues an image with its request's options).
Inference runs in the worker thread, never on the event loop. A full queue refuses at once (503);
a request that waits longer than its timeout is withdrawn before the model sees it (503), as is
one whose client goes away -- once its batch has started it is seen through.

The worker claims each job before running it (a job its requester already cancelled is dropped
then), and no single job or batch can end the worker: every failure goes to its own requests and
the worker carries on. `healthy` says whether the worker is still there to serve.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import DensePoseError
from ..results import DensePoseResult
from .errors import ServiceError
from .metrics import Metrics

RunBatch = Callable[[Sequence[Any]], list[DensePoseResult]]
# Weight of the newest batch in the running per-image time behind Retry-After.
_SMOOTHING = 0.2
# The per-image time assumed before the first batch has been timed (a zoo model on one CPU core
# takes about this long; the first timed batch replaces it).
_FIRST_GUESS_S = 1.0
_WORKER_GONE = "the model worker has stopped; the server needs a restart"

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # compared by identity: the queue removes withdrawn jobs
class _Job:
    payload: Any
    future: Future
    queued_at: float  # time.monotonic() when it was queued
    deadline: float  # time.monotonic() past which it is withdrawn rather than run (inf: never)


class BatchQueue:
    """Queue of payloads for `run_batch`, drained by one worker thread (`start` / `stop`).
    `metrics` is told about every model call, every queue wait and every request shed."""

    def __init__(self, run_batch: RunBatch, capacity: int, max_batch: int, window_s: float, metrics: Metrics | None = None):
        self._run_batch = run_batch
        self.capacity = capacity
        self.max_batch = max_batch  # may change while running (the service sets it once the model's device is known)
        self._window_s = window_s
        self._metrics = metrics or Metrics()
        self._waiting: deque[_Job] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        self._busy = 0
        self._seconds_per_image = _FIRST_GUESS_S
        self._timed_batches = 0
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
            _settle(job.future, error=ServiceError(503, "the server is shutting down"))
            self._metrics.count_shed("shutdown")
        self._thread.join()

    @property
    def healthy(self) -> bool:
        """The worker is running and takes jobs."""
        return self._thread.is_alive() and not self._stopping

    @property
    def depth(self) -> int:
        """Images waiting plus images in the model now."""
        with self._changed:
            return len(self._waiting) + self._busy

    @property
    def drain_rate(self) -> float:
        """Images the worker finishes per second of model time, from the recent batches."""
        return 1.0 / self._seconds_per_image

    def retry_after_s(self) -> int:
        """Seconds, for a Retry-After header, until every image now queued has reached the model or
        passed its deadline, at the recent drain rate. Images that will time out take no model
        time: after a burst, most of the queue may be shed long before it would have drained."""
        with self._changed:
            now = time.monotonic()
            clock = now + self._busy * self._seconds_per_image  # the batch in the model, roughly
            for job in self._waiting:
                if clock <= job.deadline:
                    clock += self._seconds_per_image
        return max(1, math.ceil(clock - now))

    def submit(self, payload: Any, timeout_s: float = math.inf) -> _Job:
        """Queue one payload, to reach the model within `timeout_s` or be withdrawn (by `predict`);
        its job's Future gets the result. ServiceError 503 when the queue is full or the worker is gone."""
        queued_at = time.monotonic()
        job = _Job(payload, Future(), queued_at, queued_at + timeout_s)
        with self._changed:
            if self._stopping:
                raise ServiceError(503, "the server is shutting down")
            if not self._thread.is_alive():
                raise ServiceError(503, _WORKER_GONE)
            full = len(self._waiting) >= self.capacity
            if not full:
                self._waiting.append(job)
                self._changed.notify_all()
        if full:
            self._metrics.count_shed("queue_full")
            raise ServiceError(503, f"the server is busy ({self.capacity} images queued); retry later", self.retry_after_s())
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
        job = self.submit(payload, timeout_s)
        waiting = asyncio.wrap_future(job.future)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except asyncio.TimeoutError:
            if self.withdraw(job):
                self._metrics.count_shed("timeout")
                raise ServiceError(503, f"no model time within {timeout_s:g} s; retry later", self.retry_after_s()) from None
            return await waiting  # already in the model: it finishes shortly
        except asyncio.CancelledError:
            if self.withdraw(job):  # nobody waits for it any more
                self._metrics.count_shed("client_gone")
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

    def _claim(self, batch: list[_Job]) -> list[_Job]:
        """The jobs of `batch` still wanted, each marked running (so that nobody can cancel it
        any more and its result can always be delivered)."""
        now = time.monotonic()
        claimed = []
        for job in batch:
            if job.future.set_running_or_notify_cancel():
                self._metrics.observe_wait(now - job.queued_at)
                claimed.append(job)
        return claimed

    def _work(self) -> None:
        while batch := self._next_batch():
            try:
                jobs = self._claim(batch)
                if jobs:
                    started = time.perf_counter()
                    self._run(jobs)
                    seconds = time.perf_counter() - started
                    self._timed_batches += 1
                    # The plain mean of the first batches (the guess counts for nothing once one is
                    # timed), then a running average that follows the recent ones.
                    weight = max(_SMOOTHING, 1.0 / self._timed_batches)
                    self._seconds_per_image += weight * (seconds / len(jobs) - self._seconds_per_image)
                    self._metrics.observe_batch(len(jobs), seconds)
            except Exception as error:  # a bug here must not take the only model thread with it
                log.error("model worker: a batch failed", exc_info=error)
                for job in batch:
                    _settle(job.future, error=ServiceError(500, "internal error (the server log has the details)"))
            except BaseException:  # the thread ends (interpreter exit): nobody may wait for these forever
                for job in batch:
                    _settle(job.future, error=ServiceError(503, _WORKER_GONE))
                raise
            finally:
                with self._changed:
                    self._busy = 0

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = self._run_batch([job.payload for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"the model gave {len(results)} results for {len(jobs)} images")
        except Exception as error:  # every failure must reach its requests
            if len(jobs) > 1:
                # One bad image must not fail the others of its batch: retry them one by one.
                for job in jobs:
                    self._run([job])
                return
            if not isinstance(error, DensePoseError):
                log.error("model call failed", exc_info=error)
            _settle(jobs[0].future, error=error)
            return
        for job, result in zip(jobs, results):
            _settle(job.future, result=result)


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Deliver a job's outcome; a future that already has one (cancelled, or failed by `stop`)
    keeps it."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # settled by another thread in between
        pass
