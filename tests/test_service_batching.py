"""The service's batching queue on its own, with a stand-in model (a function of the images)."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from densepose_torch.errors import DensePoseError
from densepose_torch.service.batching import BatchQueue
from densepose_torch.service.errors import ServiceError

WAIT_S = 10


class Model:
    """Answers each image with its first pixel value; holds calls while `hold` is clear; images
    whose first pixel is 13 make the whole call fail."""

    def __init__(self):
        self.hold = threading.Event()
        self.hold.set()
        self.calls: list[list[int]] = []
        self.started = threading.Event()

    def __call__(self, images):
        values = [int(image.flat[0]) for image in images]
        self.started.set()
        assert self.hold.wait(WAIT_S)
        self.calls.append(values)
        if 13 in values:
            raise DensePoseError("unlucky image")
        return [f"result {value}" for value in values]


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, np.uint8)


@pytest.fixture
def model():
    return Model()


def running(model, **options) -> BatchQueue:
    settings = {"capacity": 8, "max_batch": 4, "window_s": 0.05} | options
    queue = BatchQueue(model, **settings)
    queue.start()
    return queue


def test_images_waiting_together_share_a_model_call(model):
    queue = running(model)
    model.hold.clear()
    first = queue.submit(image(0))
    assert model.started.wait(WAIT_S)
    rest = [queue.submit(image(value)) for value in range(1, 7)]
    assert queue.depth == 7
    model.hold.set()
    assert [job.future.result(WAIT_S) for job in [first, *rest]] == [f"result {value}" for value in range(7)]
    queue.stop()
    assert model.calls == [[0], [1, 2, 3, 4], [5, 6]]  # max_batch 4, arrival order kept


def test_lone_image_waits_only_the_window(model):
    queue = running(model, window_s=0.2)
    started = time.monotonic()
    assert queue.submit(image(5)).future.result(WAIT_S) == "result 5"
    assert 0.2 <= time.monotonic() - started < 5
    queue.stop()


def test_a_failing_image_fails_alone(model):
    queue = running(model)
    model.hold.clear()
    blocker = queue.submit(image(1))
    assert model.started.wait(WAIT_S)
    jobs = [queue.submit(image(value)) for value in (2, 13, 4)]
    model.hold.set()
    assert blocker.future.result(WAIT_S) == "result 1"
    assert jobs[0].future.result(WAIT_S) == "result 2" and jobs[2].future.result(WAIT_S) == "result 4"
    with pytest.raises(DensePoseError, match="unlucky"):
        jobs[1].future.result(WAIT_S)
    queue.stop()
    assert model.calls == [[1], [2, 13, 4], [2], [13], [4]]


def test_full_queue_refuses_and_withdrawn_jobs_free_their_place(model):
    queue = running(model, capacity=2, max_batch=1, window_s=0)
    model.hold.clear()
    queue.submit(image(1))
    assert model.started.wait(WAIT_S)
    waiting = [queue.submit(image(2)), queue.submit(image(3))]
    with pytest.raises(ServiceError) as refused:
        queue.submit(image(4))
    assert refused.value.status == 503 and refused.value.retry_after_s >= 1
    assert queue.withdraw(waiting[0]) and waiting[0].future.cancelled()
    replacement = queue.submit(image(5))
    model.hold.set()
    assert replacement.future.result(WAIT_S) == "result 5"
    queue.stop()
    assert model.calls == [[1], [3], [5]]


def test_withdrawing_every_job_during_the_window_keeps_the_worker(model):
    queue = running(model, window_s=0.5)
    job = queue.submit(image(1))
    time.sleep(0.05)  # the worker is now inside the window
    assert queue.withdraw(job)
    assert queue.submit(image(2)).future.result(WAIT_S) == "result 2"
    queue.stop()
    assert model.calls == [[2]]


async def predict_in_model(queue, model, value, timeout_s):
    """A task predicting `image(value)`, returned once the (held) model has taken it."""
    task = asyncio.ensure_future(queue.predict(image(value), timeout_s=timeout_s))
    while not model.started.is_set():
        await asyncio.sleep(0.01)
    return task


def test_predict_times_out_only_while_waiting(model):
    queue = running(model, max_batch=1, window_s=0)
    model.hold.clear()

    async def scenario():
        in_model = await predict_in_model(queue, model, 1, timeout_s=0.1)
        with pytest.raises(ServiceError, match="no model time within 0.1 s"):
            await queue.predict(image(2), timeout_s=0.1)
        await asyncio.sleep(0.2)  # past its own timeout, but already in the model
        model.hold.set()
        return await in_model

    assert asyncio.run(scenario()) == "result 1"
    queue.stop()
    assert model.calls == [[1]]


def test_stop_fails_the_waiting_jobs(model):
    queue = running(model, max_batch=1, window_s=0)
    model.hold.clear()
    queue.submit(image(1))
    assert model.started.wait(WAIT_S)
    waiting = queue.submit(image(2))
    threading.Timer(0.1, model.hold.set).start()
    queue.stop()
    with pytest.raises(ServiceError, match="shutting down"):
        waiting.future.result(WAIT_S)
    with pytest.raises(ServiceError, match="shutting down"):
        queue.submit(image(3))


def test_worker_survives_a_job_cancelled_while_in_the_model(model):
    queue = running(model, max_batch=1, window_s=0)
    model.hold.clear()
    in_model = queue.submit(image(1))
    assert model.started.wait(WAIT_S)
    cancelled_early = queue.submit(image(2))
    assert cancelled_early.future.cancel()  # its requester went away before the model took it
    assert not in_model.future.cancel(), "a job the model has must not be cancellable"
    model.hold.set()
    assert in_model.future.result(WAIT_S) == "result 1"
    assert queue.submit(image(3)).future.result(WAIT_S) == "result 3"
    assert queue.healthy
    queue.stop()
    assert model.calls == [[1], [3]], "a cancelled job must never reach the model"
    assert not queue.healthy


def test_client_gone_after_its_timeout_while_in_the_model_leaves_the_worker_serving(model):
    """The path that killed the worker: the request's timeout passes while its image is in the
    model, then its client disconnects (the task awaiting the result is cancelled)."""
    queue = running(model, max_batch=1, window_s=0)
    model.hold.clear()

    async def scenario():
        request = await predict_in_model(queue, model, 1, timeout_s=0.05)
        await asyncio.sleep(0.2)  # past the timeout: now awaiting the job already in the model
        request.cancel()  # the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await request
        model.hold.set()
        return await queue.predict(image(2), timeout_s=WAIT_S)

    assert asyncio.run(scenario()) == "result 2"
    assert queue.healthy
    queue.stop()


def test_a_failure_outside_the_model_call_does_not_end_the_worker(model):
    def broken(images):
        if int(images[0].flat[0]) == 7:
            return []  # a bug: fewer results than images
        return model(images)

    queue = running(broken, max_batch=1, window_s=0)
    lost = queue.submit(image(7))
    with pytest.raises(RuntimeError, match="0 results for 1 images"):
        lost.future.result(WAIT_S)
    assert queue.submit(image(8)).future.result(WAIT_S) == "result 8"
    queue.stop()


class SlowModel(Model):
    """A model taking `seconds` a call."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def __call__(self, images):
        time.sleep(self.seconds)
        return super().__call__(images)


def test_retry_after_follows_the_measured_time_per_image():
    slow = SlowModel(0.3)
    queue = running(slow, max_batch=1, window_s=0)
    for value in range(3):
        queue.submit(image(value)).future.result(WAIT_S)
    # Three calls of 0.3 s already give the drain rate; the 1 s guess before them no longer counts
    # (0.3 s sleeps may take longer on a busy machine, never less).
    assert 0.3 <= 1 / queue.drain_rate < 0.6
    slow.hold.clear()
    jobs = [queue.submit(image(value)) for value in range(8)]
    assert slow.started.wait(WAIT_S)
    assert queue.retry_after_s() == pytest.approx(8 / queue.drain_rate, abs=1)
    slow.hold.set()
    for job in jobs:
        job.future.result(WAIT_S)
    queue.stop()


def test_retry_after_leaves_out_images_that_will_time_out_first():
    slow = SlowModel(0.3)
    queue = running(slow, max_batch=1, window_s=0)
    for value in range(3):
        queue.submit(image(value)).future.result(WAIT_S)
    slow.hold.clear()
    jobs = [queue.submit(image(value), timeout_s=0.5) for value in range(8)]
    assert slow.started.wait(WAIT_S)
    # One image in the model, one more fits before the 0.5 s deadlines; the six after it will be
    # withdrawn at their deadline without model time, so they must not lengthen the wait (all
    # eight would make it 3 s or more).
    assert queue.retry_after_s() == 1
    slow.hold.set()
    for job in jobs:
        job.future.result(WAIT_S)
    queue.stop()
