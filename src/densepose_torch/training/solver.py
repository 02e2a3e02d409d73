"""detectron2's optimiser: SGD with momentum, weight decay except on normalisation
layers, a linear (or constant) warmup, step decay, and optional per-parameter gradient clipping;
AdamW as an alternative for training from scratch.

The learning rate is a pure function of the iteration (`learning_rate`), so resuming needs only
the iteration and the optimizer's momentum buffers.
"""
from __future__ import annotations

import bisect

import torch
from torch import nn

from .config import SolverConfig

_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm)


def parameter_groups(model: nn.Module, solver: SolverConfig) -> list[dict]:
    """Trainable parameters in two groups: normalisation layers (weight_decay_norm), the rest
    (weight_decay). Order follows model.named_modules(), so it is the same in every run."""
    norm, other, seen = [], [], set()
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            (norm if isinstance(module, _NORM_TYPES) else other).append(parameter)
    groups = [{"params": other, "weight_decay": solver.weight_decay}]
    if norm:
        groups.append({"params": norm, "weight_decay": solver.weight_decay_norm})
    return groups


def build_optimizer(model: nn.Module, solver: SolverConfig) -> torch.optim.Optimizer:
    """detectron2's SGD with momentum, or AdamW (decoupled weight decay, betas 0.9 / 0.999):
    its per-parameter step size keeps the normalisation-free FPN and heads stable when nothing
    was pretrained."""
    groups = parameter_groups(model, solver)
    if solver.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=solver.base_lr)
    return torch.optim.SGD(groups, lr=solver.base_lr, momentum=solver.momentum)


def learning_rate(solver: SolverConfig, iteration: int) -> float:
    """base_lr x warmup factor x gamma ** (steps passed). Linear warmup goes from
    warmup_factor to 1 over warmup_iters iterations."""
    warmup = 1.0
    if iteration < solver.warmup_iters:
        if solver.warmup_method == "constant":
            warmup = solver.warmup_factor
        else:
            alpha = iteration / solver.warmup_iters
            warmup = solver.warmup_factor * (1 - alpha) + alpha
    return solver.base_lr * warmup * solver.gamma ** bisect.bisect_right(list(solver.steps), iteration)


def apply_learning_rate(optimizer: torch.optim.Optimizer, solver: SolverConfig, iteration: int) -> float:
    """Set every parameter group to the rate of `iteration` (before its step); returns it."""
    lr = learning_rate(solver, iteration)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def clip_gradients(parameters: list[torch.nn.Parameter], solver: SolverConfig) -> None:
    """detectron2 clips each parameter's gradient on its own: its values into [-c, c]
    ("value") or its L2 norm to at most c ("norm")."""
    if solver.clip_gradients is None:
        return
    for parameter in parameters:
        if parameter.grad is None:
            continue
        if solver.clip_gradients == "value":
            torch.nn.utils.clip_grad_value_(parameter, solver.clip_value)
        else:
            torch.nn.utils.clip_grad_norm_(parameter, solver.clip_value, 2.0)
