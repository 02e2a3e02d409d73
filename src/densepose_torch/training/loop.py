"""The resumable training loop every network of this package trains with (DensePose R-CNN and
the distillation teacher). A trainee supplies its model, its batches (a function of the
iteration), its losses and how its checkpoint files look; the loop owns the rest: the optimizer
and the learning-rate schedule, the NaN / inf check, mixed precision and gradient clipping, the
progress bar, the loss window of the log, and periodic checkpoints of the training state
(weights, optimizer, loss scale, RNG states, iteration) published through a pointer file.

    FOLDER/PREFIXNNNNNNN.pth   checkpoints after N iterations, each written atomically
    FOLDER/POINTER             the name of the newest (rewritten atomically after the file)

Resuming restores all of that state; batches being a function of the iteration, a resumed run
computes what the uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..errors import DensePoseError
from ..io.atomic import atomic_write
from .config import SolverConfig
from .distributed import Processes, all_finite, barrier, mean_over_processes
from .solver import apply_learning_rate, build_optimizer, clip_gradients

# (path, training state) -> a checkpoint file holding the trainee's weights and that state.
WriteCheckpoint = Callable[[Path, dict[str, Any]], None]


@dataclass(frozen=True)
class LoopConfig:
    """How a loop runs and how its messages name things."""

    solver: SolverConfig
    checkpoint_period: int
    log_period: int = 1
    # A run whose pointer names its last iteration resumes to "finished" (the student's final
    # weights are rewritten from it); the teacher writes its final file instead.
    checkpoint_at_end: bool = True
    label: str = "training"  # the progress bar's
    loss_name: str = "the loss"  # in the divergence error
    divergence_advice: str = "lower the learning rate, then resume from the last checkpoint"
    model_section: str = "the model section"  # the config section a checkpoint must fit


@dataclass(frozen=True)
class CheckpointFiles:
    """Where a run's checkpoints live: FOLDER/{prefix}NNNNNNN.pth and FOLDER/{pointer}."""

    folder: Path
    prefix: str
    pointer: str

    def path(self, iteration: int) -> Path:
        return self.folder / f"{self.prefix}{iteration:07d}.pth"

    def latest(self) -> Path | None:
        """The checkpoint the pointer names; None when there is no pointer (nothing to resume)."""
        pointer = self.folder / self.pointer
        if not pointer.is_file():
            return None
        path = self.folder / pointer.read_text(encoding="utf-8").strip()
        if not path.is_file():
            raise DensePoseError(f"{pointer} names {path.name}, which is missing; restore it or start a new run")
        return path

    def publish(self, path: Path) -> None:
        """Point at `path`; called after it is complete, so the pointer never names a torn file."""
        with atomic_write(self.folder / self.pointer, "w") as handle:
            handle.write(path.name + "\n")


@dataclass(frozen=True)
class LoopHooks:
    """What a trainee does beside the loop's own work; each is optional."""

    on_log: Callable[[dict[str, Any]], None] | None = None  # main process: {"iteration", "lr", "losses", "data_time", "time"}
    on_checkpoint: Callable[[int], None] | None = None  # main process, after the checkpoint of iteration n is published
    after_iteration: Callable[[int], None] | None = None  # every process, last thing of each iteration


def rng_state(device: torch.device) -> dict[str, Any]:
    """The generators a resumed run must continue: the CPU's, and the GPUs' when the run's
    device (one resolve_device chose) is CUDA."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | torch.Tensor, device: torch.device) -> None:
    """Restore what `rng_state` saved (teacher checkpoints written before this loop hold the CPU
    state alone, as a tensor)."""
    if isinstance(state, torch.Tensor):
        state = {"torch": state}
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda"])


def load_fitting_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path, section: str) -> None:
    """Load a checkpoint's weights into `model`; batch norm's step counters may be absent (the
    exported architecture drops them), anything else that does not fit is a one-line error."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise DensePoseError(f"{path} does not fit the configured model (e.g. {(unexpected or missing)[0]}); "
                             f"was {section} changed since the run started?")


class ResumableLoop:
    """Trains `model` by `config.solver` from a start iteration to max_iter. Under torchrun every
    process runs the loop on its share of the batch; only the main one writes."""

    def __init__(self, config: LoopConfig, model: nn.Module, files: CheckpointFiles, write: WriteCheckpoint,
                 device: torch.device, processes: Processes = Processes(), progress: bool = True):
        self.config = config
        self.model = model  # what checkpoints hold and resume restores: never a DDP wrapper
        self.files = files
        self.write = write
        self.device = device
        self.processes = processes
        self.progress = progress
        self.optimizer = build_optimizer(model, config.solver)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.solver.amp)
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    def restore(self) -> int:
        """Load the newest checkpoint into the model, optimizer, loss scale and RNGs; the
        iteration to continue at (0 when there is none)."""
        path = self.files.latest()
        if path is None:
            return 0
        data = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and containers: nothing to run
        load_fitting_weights(self.model, data["model"], path, self.config.model_section)
        self.optimizer.load_state_dict(data["optimizer"])
        if data.get("scaler"):  # absent from old teacher checkpoints, empty when AMP is off
            self.scaler.load_state_dict(data["scaler"])
        set_rng_state(data["rng"], self.device)
        return int(data["iteration"])

    def save(self, iteration: int) -> Path:
        """Write the checkpoint of `iteration` and point at it (main process only)."""
        path = self.files.path(iteration)
        state = {"iteration": iteration, "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": rng_state(self.device)}
        self.write(path, state)
        self.files.publish(path)
        return path

    def run(self, start: int, batch: Callable[[int], Any], losses: Callable[[Any], dict[str, torch.Tensor]],
            hooks: LoopHooks = LoopHooks()) -> None:
        """Iterations start .. max_iter - 1: `batch(iteration)` -> `losses(batch)` (named scalar
        tensors, summed into the loss that is minimised) -> one optimizer step."""
        max_iter = self.config.solver.max_iter
        bar = tqdm(total=max_iter, initial=start, desc=self.config.label, unit="it", disable=not self.progress, dynamic_ncols=True)
        window = _LossWindow()
        try:
            for iteration in range(start, max_iter):
                began = time.perf_counter()
                inputs = batch(iteration)
                loaded = time.perf_counter()
                lr, named, total = self._step(iteration, inputs, losses)
                done = iteration + 1
                window.add(named, total, loaded - began, time.perf_counter() - loaded)
                bar.update(1)
                if done % self.config.log_period == 0 or done == max_iter:
                    self._log(done, lr, window.flush(), bar, hooks)
                if self._checkpoint_due(done):
                    self._checkpoint(done, hooks)
                if hooks.after_iteration is not None:
                    hooks.after_iteration(done)
        finally:
            bar.close()

    def _step(self, iteration: int, inputs: Any, losses: Callable[[Any], dict[str, torch.Tensor]]):
        """One optimizer step; (its learning rate, the named losses, their sum)."""
        solver = self.config.solver
        lr = apply_learning_rate(self.optimizer, solver, iteration)
        autocast = torch.autocast("cuda", dtype=torch.float16) if solver.amp else contextlib.nullcontext()
        with autocast:
            named = losses(inputs)
        total = sum(named.values())
        check_finite(total, iteration, self.config, self.processes)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if solver.clip_gradients:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the loss-scaled ones
            clip_gradients(self.trainable, solver)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return lr, named, total

    def _log(self, done: int, lr: float, window: dict[str, Any], bar: tqdm, hooks: LoopHooks) -> None:
        # Every process joins the mean (a collective), only the main one has a log to write.
        means = mean_over_processes(window["losses"], self.processes, self.device)
        if self.processes.main and hooks.on_log is not None:
            hooks.on_log({"iteration": done, "lr": lr, "losses": means, "data_time": window["data_time"], "time": window["time"]})
        bar.set_postfix(loss=f"{means['total']:.3f}", lr=f"{lr:.2g}")

    def _checkpoint_due(self, done: int) -> bool:
        if done == self.config.solver.max_iter:
            return self.config.checkpoint_at_end
        return done % self.config.checkpoint_period == 0

    def _checkpoint(self, done: int, hooks: LoopHooks) -> None:
        if self.processes.main:
            self.save(done)
            if hooks.on_checkpoint is not None:
                hooks.on_checkpoint(done)
        barrier(self.processes)


def check_finite(total: torch.Tensor, iteration: int, config: LoopConfig, processes: Processes = Processes()) -> None:
    """A one-line error when the loss is NaN or inf in any process (all of them stop together)."""
    if not all_finite(total, processes):
        raise DensePoseError(f"{config.loss_name} became {total.detach().item()} at iteration {iteration}; {config.divergence_advice}")


class _LossWindow:
    """The losses and timings of the iterations since the last log line."""

    def __init__(self) -> None:
        self._empty()

    def _empty(self) -> None:
        self.losses: dict[str, list[float]] = {}
        self.data_time = self.step_time = 0.0

    def add(self, named: dict[str, torch.Tensor], total: torch.Tensor, data_time: float, step_time: float) -> None:
        for name, value in named.items():
            self.losses.setdefault(name, []).append(float(value.detach()))
        self.losses.setdefault("total", []).append(float(total.detach()))
        self.data_time += data_time
        self.step_time += step_time

    def flush(self) -> dict[str, Any]:
        """Means since the last flush ({"losses": {name: mean}, "data_time", "time"}); then empty.
        Called only after at least one `add`."""
        count = len(self.losses["total"])
        means = {"losses": {k: sum(v) / len(v) for k, v in self.losses.items()},
                 "data_time": self.data_time / count, "time": (self.data_time + self.step_time) / count}
        self._empty()
        return means
