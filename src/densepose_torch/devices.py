"""Which device a model runs on: one resolution for every command and for `Predictor`."""
from __future__ import annotations

import torch

from .errors import DensePoseError


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The device `name` means (None: the first GPU when torch can use one, else the CPU),
    checked before any work starts: an unknown name, or a GPU this torch build or machine does not
    have, is a one-line DensePoseError. `cuda` becomes the current GPU's index (`cuda:0`)."""
    if name is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise DensePoseError(f"unknown device {str(name)!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DensePoseError("CUDA was requested but this torch build has no usable GPU; use --device cpu")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DensePoseError(f"there is no GPU cuda:{index} ({torch.cuda.device_count()} visible); use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DensePoseError("mps (Apple GPU) was requested but this torch build or machine has none; use --device cpu")
    return device
