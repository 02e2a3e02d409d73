"""Service metrics in the Prometheus text exposition format (version 0.0.4), kept by hand: a
handful of counters and histograms do not need a client library.

Series: `densepose_requests_total{endpoint,method,status}`,
`densepose_request_duration_seconds{endpoint}` (histogram), `densepose_errors_total{endpoint,status}`
(answers of 400 and above), `densepose_queue_depth` (images waiting or in the model),
`densepose_queue_capacity`, `densepose_queue_wait_seconds` (histogram: time from queueing to the
model), `densepose_queue_drain_images_per_second` (the recent rate Retry-After follows),
`densepose_shed_total{reason}` (requests that never reached the model: queue_full, timeout,
client_gone, shutdown), `densepose_batch_size` and `densepose_inference_seconds` (histograms of
model calls), `densepose_model_ready` (1 once the model is loaded and its worker runs).
"""
from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHED_REASONS = ("queue_full", "timeout", "client_gone", "shutdown")
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Histogram:
    """Cumulative-bucket histogram: `counts[i]` observations <= `bounds[i]`, the rest only in `total`."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: int = 0
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        for index in range(bisect.bisect_left(self.bounds, value), len(self.bounds)):
            self.counts[index] += 1
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        rows = [f"{name}_bucket{_labels({**labels, 'le': _number(bound)})} {count}" for bound, count in zip(self.bounds, self.counts)]
        rows.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {self.total}")
        rows.append(f"{name}_sum{_labels(labels)} {_number(self.sum)}")
        rows.append(f"{name}_count{_labels(labels)} {self.total}")
        return rows


def _number(value: float) -> str:
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


@dataclass(frozen=True)
class QueueState:
    """The model queue as the metrics page shows it."""

    depth: int  # images waiting or in the model
    capacity: int
    drain_rate: float  # images per second of model time, recently


class Metrics:
    """Counters of one service; safe to update from the event loop and the model thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._latency: dict[str, Histogram] = {}
        self._batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self._inference = Histogram(LATENCY_BUCKETS_S)
        self._waits = Histogram(LATENCY_BUCKETS_S)
        self._shed: Counter[str] = Counter({reason: 0 for reason in SHED_REASONS})

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, method, status)] += 1
            self._latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS_S)).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self._batch_sizes.observe(size)
            self._inference.observe(seconds)

    def observe_wait(self, seconds: float) -> None:
        with self._lock:
            self._waits.observe(seconds)

    def count_shed(self, reason: str) -> None:
        with self._lock:
            self._shed[reason] += 1

    def exposition(self, queue: QueueState, model_ready: bool) -> str:
        """The metrics page."""
        with self._lock:
            lines = [
                "# HELP densepose_requests_total HTTP requests answered, by endpoint, method and status code.",
                "# TYPE densepose_requests_total counter",
            ]
            for (endpoint, method, status), count in sorted(self._requests.items()):
                lines.append(f"densepose_requests_total{_labels({'endpoint': endpoint, 'method': method, 'status': str(status)})} {count}")
            lines += [
                "# HELP densepose_errors_total HTTP requests answered with a status of 400 or more.",
                "# TYPE densepose_errors_total counter",
            ]
            errors: Counter[tuple[str, int]] = Counter()
            for (endpoint, _, status), count in self._requests.items():
                if status >= 400:
                    errors[(endpoint, status)] += count
            for (endpoint, status), count in sorted(errors.items()):
                lines.append(f"densepose_errors_total{_labels({'endpoint': endpoint, 'status': str(status)})} {count}")
            lines += [
                "# HELP densepose_request_duration_seconds Time from request to the end of the answer.",
                "# TYPE densepose_request_duration_seconds histogram",
            ]
            for endpoint, histogram in sorted(self._latency.items()):
                lines += histogram.lines("densepose_request_duration_seconds", {"endpoint": endpoint})
            lines += [
                "# HELP densepose_queue_depth Images waiting for the model or in it now.",
                "# TYPE densepose_queue_depth gauge",
                f"densepose_queue_depth {queue.depth}",
                "# HELP densepose_queue_capacity Images the queue holds before it refuses (503).",
                "# TYPE densepose_queue_capacity gauge",
                f"densepose_queue_capacity {queue.capacity}",
                "# HELP densepose_queue_drain_images_per_second Images the model finishes per second, recently (Retry-After follows it).",
                "# TYPE densepose_queue_drain_images_per_second gauge",
                f"densepose_queue_drain_images_per_second {_number(queue.drain_rate)}",
                "# HELP densepose_queue_wait_seconds Time from queueing to the start of the model call.",
                "# TYPE densepose_queue_wait_seconds histogram",
                *self._waits.lines("densepose_queue_wait_seconds", {}),
                "# HELP densepose_shed_total Requests answered without reaching the model, by reason.",
                "# TYPE densepose_shed_total counter",
                *(f"densepose_shed_total{_labels({'reason': reason})} {count}" for reason, count in sorted(self._shed.items())),
                "# HELP densepose_model_ready 1 once the model is loaded and its worker serves.",
                "# TYPE densepose_model_ready gauge",
                f"densepose_model_ready {int(model_ready)}",
                "# HELP densepose_batch_size Images per model call.",
                "# TYPE densepose_batch_size histogram",
                *self._batch_sizes.lines("densepose_batch_size", {}),
                "# HELP densepose_inference_seconds Duration of model calls (one batch each).",
                "# TYPE densepose_inference_seconds histogram",
                *self._inference.lines("densepose_inference_seconds", {}),
            ]
        return "\n".join(lines) + "\n"
