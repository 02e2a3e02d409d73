"""What `densepose serve` allows, as one frozen dataclass; defaults suit one CPU or GPU model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DensePoseError
from ..io.images import DEFAULT_MAX_PIXELS

DEFAULT_MIN_SCORE = 0.8  # as `densepose predict` and detectron2's apply_net
# Open connections (and requests) past which uvicorn answers 503 at once.
DEFAULT_MAX_CONNECTIONS = 256
GPU_MAX_BATCH = 8


@dataclass(frozen=True)
class ServiceSettings:
    """Limits of the service. `data_root` is the only folder `POST /densepose` may read from and
    write to (None: that endpoint answers 403)."""

    model_label: str = "model"  # what /v1/models calls the model while it loads
    data_root: Path | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS  # as `densepose predict --max-pixels`
    queue_size: int = 64  # images waiting for the model; one more gets 503
    # Images per model call; None: GPU_MAX_BATCH on a GPU, 1 on the CPU, where a batch costs
    # about as much as its images one by one, so batching would only add latency.
    max_batch: int | None = None
    batch_window_ms: float = 5.0  # how long the first image of a batch waits for company
    request_timeout_s: float = 60.0  # longest wait in the queue before 503
    read_timeout_s: float = 30.0  # longest time a client may take to send its request body

    def batch_size_for(self, device_type: str) -> int:
        """Images per model call on a device of this type ("cpu", "cuda", ...)."""
        if self.max_batch is not None:
            return self.max_batch
        return GPU_MAX_BATCH if device_type == "cuda" else 1

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "queue_size", "max_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise DensePoseError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("request_timeout_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                raise DensePoseError(f"{name} must be positive, not {getattr(self, name)}")
        if not 0 <= self.batch_window_ms <= 1000:
            raise DensePoseError(f"batch_window_ms must be between 0 and 1000, not {self.batch_window_ms}")
        if self.data_root is not None and not Path(self.data_root).is_dir():
            raise DensePoseError(f"data root {self.data_root} is not a folder")
