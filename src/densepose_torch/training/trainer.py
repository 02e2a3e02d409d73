"""The training loop: `train(config)` runs (or, with resume=True, continues) a run in
`config.output`.

    OUTPUT/config.yaml              the resolved config
    OUTPUT/metrics.jsonl            one JSON line per log period (losses, lr, timing) and per evaluation
    OUTPUT/loss_curves.png          the curves (redrawn at every checkpoint)
    OUTPUT/model_NNNNNNN.pth        checkpoints after N iterations (weights + optimizer + iteration)
    OUTPUT/last_checkpoint          the name of the newest one
    OUTPUT/model_final.pth          the trained weights alone

Every checkpoint loads with `load_model(path)`. Resuming restores weights, momentum, loss scale,
RNG state and the iteration; data order, augmentation and sampling are functions of the
iteration, so a resumed run computes exactly what the uninterrupted run would have. Under
torchrun each process trains on its share of the global batch (DDP averages the gradients) and
only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..checkpoint import save_checkpoint
from ..data.loader import StreamBatchSampler, TrainingDataset, build_train_loader
from ..data.mapper import Augmentation
from ..data.transforms import load_flip_symmetry
from ..devices import resolve_device
from ..errors import DensePoseError
from ..io.atomic import atomic_write
from ..modeling import DensePoseRCNN, build_model
from .config import TrainConfig, dump_train_config, load_train_config
from .datasets import dataset_files, training_source
from .distributed import (
    Processes,
    all_finite,
    barrier,
    init_processes,
    mean_over_processes,
    shutdown,
)
from .evaluation import evaluate_model, evaluate_predictions
from .init import (
    export_model,
    initialize_weights,
    load_initial_weights,
    prepare_backbone,
)
from .model import TrainingModel
from .plot import plot_metrics
from .solver import build_optimizer, clip_gradients, learning_rate

LAST_CHECKPOINT = "last_checkpoint"
METRICS_LOG = "metrics.jsonl"
PLOT = "loss_curves.png"
FINAL = "model_final.pth"


def build_training_model(config: TrainConfig) -> DensePoseRCNN:
    """The model as training starts: detectron2's initialisation, the initial weights if any,
    frozen stages and (backbone_norm "bn") trainable batch norm; in train mode. A model that learns
    from synthetic data alone predicts the synthetic body's charts, and its config says so."""
    model_config = config.model
    if all(dataset.synthetic is not None for dataset in config.data.train):
        model_config = dataclasses.replace(model_config, chart_body="synthetic")
    model = build_model(model_config, name=Path(config.output).name)
    initialize_weights(model)
    if config.init_weights:
        loaded, left = load_initial_weights(model, config.init_weights)
        print(f"densepose train: {loaded} tensors from {config.init_weights}, {left} left at their initial values", file=sys.stderr)
    prepare_backbone(model, config.backbone_norm, config.freeze_at)
    return model.to(memory_format=torch.channels_last).train()


def read_metrics(path: Path) -> list[dict]:
    entries = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill
    return entries


class MetricsLog:
    """JSON lines, appended and flushed one at a time (a kill loses at most the line being written)."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        if keep_until is not None:  # a resumed run redoes what followed its checkpoint
            kept = [e for e in read_metrics(path) if e.get("iteration", 0) <= keep_until]
            with atomic_write(path, "w") as handle:
                handle.writelines(json.dumps(e) + "\n" for e in kept)
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115  (open for the whole run, closed by close())

    def write(self, entry: dict) -> None:
        self.handle.write(json.dumps(entry) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def save_training_checkpoint(path: Path, model: DensePoseRCNN, optimizer, scaler, iteration: int, config: TrainConfig) -> None:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(
        export_model(model), path, iteration=iteration, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
        rng=rng, train_config=config.to_dict(),
    )
    with atomic_write(path.parent / LAST_CHECKPOINT, "w") as handle:
        handle.write(path.name + "\n")


def restore(output: Path, model: DensePoseRCNN, optimizer, scaler) -> int:
    """Load the newest checkpoint of `output` into the training objects; the iteration to resume at."""
    pointer = output / LAST_CHECKPOINT
    if not pointer.is_file():
        raise DensePoseError(f"nothing to resume in {output}: it has no {LAST_CHECKPOINT} (start without --resume)")
    path = output / pointer.read_text(encoding="utf-8").strip()
    data = torch.load(path, map_location="cpu", weights_only=False)
    missing, unexpected = model.load_state_dict(data["model"], strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise DensePoseError(f"{path} does not fit the configured model (e.g. {(unexpected or missing)[0]}); "
                             "was the model section changed since the run started?")
    optimizer.load_state_dict(data["optimizer"])
    scaler.load_state_dict(data["scaler"])
    torch.set_rng_state(data["rng"]["torch"])
    if "cuda" in data["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(data["rng"]["cuda"])
    return int(data["iteration"])


def _held_out(config: TrainConfig) -> tuple[Path, Path] | None:
    if config.data.val is None:
        return None
    files = dataset_files(config.data.val, write=False)
    if files is None:
        raise DensePoseError("data.val.synthetic needs a `cache` folder: the held-out set is evaluated from disk")
    return files


def run_evaluation(model: DensePoseRCNN, config: TrainConfig, progress: bool = True,
                   predict: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """Held-out figures of `model` (any architecture state; evaluated as exported), or of
    `predict` (image path -> DensePoseResult) when given."""
    from ..evaluation.surface_names import resolve_surface

    files = _held_out(config)
    if files is None:
        raise DensePoseError("the config has no held-out set (data.val)")
    surface = resolve_surface(config.data.eval_surface)
    if predict is not None:
        return evaluate_predictions(predict, files[0], files[1], surface, config.data.val_limit, config.data.eval_min_score, progress)
    exported = export_model(model)
    return evaluate_model(exported, files[0], files[1], surface, config.data.val_limit, config.data.eval_min_score, progress)


def prepare_data(config: TrainConfig, processes: Processes, progress: bool) -> None:
    """Write synthetic caches (main process only; the others wait)."""
    if processes.main:
        for dataset in config.data.train + ((config.data.val,) if config.data.val else ()):
            dataset_files(dataset, write=True, progress=progress)
    barrier(processes)


def is_stage_config(init_weights: str | None) -> bool:
    """Whether `init_weights` names a training config (an earlier stage) rather than weights."""
    return init_weights is not None and Path(init_weights).suffix in (".yaml", ".yml")


def _check_stage_chain(config: TrainConfig) -> None:
    outputs = {Path(config.output).resolve()}
    source = config.init_weights
    while is_stage_config(source):
        stage = load_train_config(Path(source))
        output = Path(stage.output).resolve()
        if output in outputs:
            raise DensePoseError(f"init_weights: the stage {source} writes to {stage.output}, as a later stage does; give each stage its own output")
        outputs.add(output)
        source = stage.init_weights


def _train_earlier_stage(path: Path, progress: bool, processes: Processes, device: torch.device) -> Path:
    """Train the config at `path` to its end (resuming it where it stopped; nothing to do when it
    has finished) and return its final weights, which the next stage starts from."""
    stage = load_train_config(path)
    if progress:
        print(f"densepose train: first the earlier stage {path} (output {stage.output})", file=sys.stderr)
    return _train(stage, (Path(stage.output) / LAST_CHECKPOINT).is_file(), progress, processes, device, None)


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          on_iteration: Callable[[int, DensePoseRCNN], None] | None = None) -> Path:
    """Train as `config` says; returns the path of the final weights. `on_iteration(n, model)`
    is called in every process after n iterations (tests use it to interrupt a run or to see
    each process's weights)."""
    device = resolve_device(config.device)
    if config.solver.amp and device.type != "cuda":
        raise DensePoseError("solver.amp (float16 autocast) needs CUDA; set solver.amp=false on the CPU")
    if config.threads:
        torch.set_num_threads(config.threads)
    processes = init_processes(device.type)
    try:
        return _train(config, resume, progress and processes.main, processes, device, on_iteration)
    finally:
        shutdown(processes)


def _train(config: TrainConfig, resume: bool, progress: bool, processes: Processes, device: torch.device,
           on_iteration: Callable[[int, DensePoseRCNN], None] | None) -> Path:
    if device.type == "cuda" and processes.distributed:
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
    output = Path(config.output)
    if processes.main and not resume and (output / LAST_CHECKPOINT).is_file():
        raise DensePoseError(f"{output} already holds a training run; add --resume to continue it, or choose another --output")
    _check_stage_chain(config)
    prepare_data(config, processes, progress)
    train_sets = config.data.train
    if config.distillation is not None:
        from .dense_labels import distilled_train_sets, prepare_dense_labels

        if processes.main:
            prepare_dense_labels(config, progress)
        barrier(processes)
        train_sets = distilled_train_sets(config)

    if is_stage_config(config.init_weights):
        config = replace(config, init_weights=str(_train_earlier_stage(Path(config.init_weights), progress, processes, device)))
    torch.manual_seed(config.seed)
    model = build_training_model(config).to(device)
    optimizer = build_optimizer(model, config.solver)
    scaler = torch.amp.GradScaler("cuda", enabled=config.solver.amp)
    start = restore(output, model, optimizer, scaler) if resume else 0
    solver = config.solver
    if start >= solver.max_iter and (output / FINAL).is_file():
        return output / FINAL

    source = training_source(train_sets)
    augmentation = Augmentation(config.data.min_size_train, config.data.max_size_train, config.data.random_flip,
                                load_flip_symmetry(config.data.uv_symmetry))
    dataset = TrainingDataset(source, len(source), augmentation, config.seed)
    sampler = StreamBatchSampler(len(source), solver.ims_per_batch, config.seed, start, processes.rank, processes.world_size)
    batches = build_train_loader(dataset, sampler, config.data.num_workers)

    network: torch.nn.Module = TrainingModel(model, config.loss)
    if processes.distributed:
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    log = None
    if processes.main:
        output.mkdir(parents=True, exist_ok=True)
        with atomic_write(output / "config.yaml", "w") as handle:
            handle.write(dump_train_config(config))
        log = MetricsLog(output / METRICS_LOG, start if resume else 0)

    window: dict[str, list[float]] = {}
    timing = {"data": 0.0, "step": 0.0}
    bar = tqdm(total=solver.max_iter, initial=start, desc="training", unit="it", disable=not progress, dynamic_ncols=True)
    try:
        for iteration in range(start, solver.max_iter):
            began = time.perf_counter()
            batch = next(batches)
            loaded = time.perf_counter()
            lr = learning_rate(solver, iteration)
            for group in optimizer.param_groups:
                group["lr"] = lr
            autocast = torch.autocast("cuda", dtype=torch.float16) if solver.amp else contextlib.nullcontext()
            with autocast:
                losses = network(batch)
            total = sum(losses.values())
            if not all_finite(total, processes):
                raise DensePoseError(
                    f"the loss became {total.detach().item()} at iteration {iteration}; lower solver.base_lr, lengthen the warmup "
                    "or enable solver.clip_gradients, then resume from the last checkpoint")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if solver.clip_gradients:
                scaler.unscale_(optimizer)
                clip_gradients(trainable, solver)
            scaler.step(optimizer)
            scaler.update()
            done = iteration + 1
            timing["data"] += loaded - began
            timing["step"] += time.perf_counter() - loaded
            for name, value in losses.items():
                window.setdefault(name, []).append(float(value.detach()))
            window.setdefault("total", []).append(float(total.detach()))
            bar.update(1)
            if done % config.log_period == 0 or done == solver.max_iter:
                means = mean_over_processes({k: sum(v) / len(v) for k, v in window.items()}, processes, device)
                count = len(window["total"])
                if log is not None:
                    log.write({"iteration": done, "lr": lr, "losses": means,
                               "data_time": timing["data"] / count, "time": (timing["data"] + timing["step"]) / count})
                bar.set_postfix(loss=f"{means['total']:.3f}", lr=f"{lr:.2g}")
                window, timing = {}, {"data": 0.0, "step": 0.0}
            if done % config.checkpoint_period == 0 or done == solver.max_iter:
                if processes.main:
                    save_training_checkpoint(output / f"model_{done:07d}.pth", model, optimizer, scaler, done, config)
                    plot_metrics(read_metrics(output / METRICS_LOG), output / PLOT, output.name)
                barrier(processes)
            evaluate_now = config.eval_period and done % config.eval_period == 0
            if config.data.val is not None and (evaluate_now or done == solver.max_iter):
                if processes.main:
                    summary = run_evaluation(model, config, progress)["summary"]
                    log.write({"iteration": done, "eval": summary})
                    plot_metrics(read_metrics(output / METRICS_LOG), output / PLOT, output.name)
                    bar.write("iteration {}: {}".format(done, ", ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())))
                barrier(processes)
                model.train()
            if on_iteration is not None:
                on_iteration(done, model)
    finally:
        bar.close()
        if log is not None:
            log.close()
    if processes.main:
        save_checkpoint(export_model(model), output / FINAL, iteration=solver.max_iter, train_config=config.to_dict())
    barrier(processes)
    return output / FINAL
