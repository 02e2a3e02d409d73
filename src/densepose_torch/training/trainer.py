"""Training DensePose R-CNN: `train(config)` runs (or, with resume=True, continues) a run in
`config.output`, on the resumable loop of `loop.py`.

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

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..allocator import keep_freed_memory
from ..chart_symmetry import load_flip_symmetry
from ..checkpoint import save_checkpoint
from ..data.loader import StreamBatchSampler, TrainingDataset, build_train_loader
from ..data.mapper import Augmentation
from ..devices import resolve_device
from ..errors import DensePoseError
from ..io.atomic import atomic_write
from ..modeling import DensePoseRCNN, build_model
from .config import DatasetConfig, TrainConfig, dump_train_config, load_train_config
from .datasets import dataset_files, training_source
from .distributed import Processes, barrier, init_processes, shutdown
from .evaluation import evaluate_model, evaluate_predictions
from .init import (
    export_model,
    initialize_weights,
    load_initial_weights,
    prepare_backbone,
)
from .loop import CheckpointFiles, LoopConfig, LoopHooks, ResumableLoop
from .model import TrainingModel
from .plot import plot_metrics
from .soup import average_checkpoints

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
        loaded, left = load_initial_weights(model, config.init_weights, config.grow_head)
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


def evaluate_trained(config: TrainConfig, model_path: str | os.PathLike | None = None, teacher: bool = False) -> tuple[Path, dict[str, Any]]:
    """`densepose train --eval-only`: the held-out figures of a trained model (default: the run's
    final weights), or with `teacher` of the config's distillation teacher (trained first if
    needed) run on the person boxes that model detects. Writes OUTPUT/evaluation.json; returns
    the evaluated checkpoint and the figures."""
    from ..checkpoint import load_model

    if teacher and model_path is None:
        raise DensePoseError("--teacher needs --model DETECTOR.pth: the region-based model whose person boxes the teacher labels")
    path = Path(model_path) if model_path else Path(config.output) / FINAL
    model = load_model(path, device=resolve_device(config.device))
    if config.data.val is None:
        raise DensePoseError("the config has no held-out set (data.val) to evaluate on")
    dataset_files(config.data.val, write=True)  # renders a synthetic held-out set on first use
    if teacher:
        from .teacher import TeacherPredictor, load_teacher, train_teacher

        prepare_data(config, Processes(), True)  # the teacher trains on data.train
        path = train_teacher(config)
        result = run_evaluation(model, config, predict=TeacherPredictor(load_teacher(path, model.device), model))
    else:
        result = run_evaluation(model, config)
    with atomic_write(Path(config.output) / "evaluation.json", "w") as handle:
        json.dump({"model": str(path), **result}, handle, indent=2)
    return path, result


def prepare_data(config: TrainConfig, processes: Processes, progress: bool) -> None:
    """Write synthetic caches (main process only, rendering in as many processes as the loader
    has workers; the others wait)."""
    if processes.main:
        for dataset in config.data.train + ((config.data.val,) if config.data.val else ()):
            dataset_files(dataset, write=True, progress=progress, workers=max(1, config.data.num_workers))
    barrier(processes)


def is_stage_config(init_weights: str | None) -> bool:
    """Whether `init_weights` names a training config (an earlier stage) rather than weights."""
    return init_weights is not None and Path(init_weights).suffix in (".yaml", ".yml")


def _earlier_stages(config: TrainConfig) -> list[str]:
    """The stage configs a run trains before its own work: init_weights and average_of's."""
    return [source for source in (config.init_weights, *config.average_of) if is_stage_config(source)]


def _check_stage_chain(config: TrainConfig) -> None:
    """Every stage trained on the way (init_weights and average_of, followed back) writes to an
    output of its own: two stages sharing one would resume each other's checkpoints."""
    writers = {Path(config.output).resolve(): None}  # output -> the stage config writing it
    pending, seen = _earlier_stages(config), set()
    while pending:
        source = pending.pop()
        key = Path(source).resolve()
        if key in seen:  # a stage two later ones start from, checked once
            continue
        seen.add(key)
        stage = load_train_config(Path(source))
        if writers.setdefault(Path(stage.output).resolve(), key) != key:
            raise DensePoseError(f"the stage {source} writes to {stage.output}, as another stage of this run does; give each stage its own output")
        pending += _earlier_stages(stage)


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
    if device.type == "cpu":
        keep_freed_memory()
    processes = init_processes(device.type)
    try:
        return _train(config, resume, progress and processes.main, processes, _process_device(device, processes), on_iteration)
    finally:
        shutdown(processes)


def _process_device(device: torch.device, processes: Processes) -> torch.device:
    """This process's device: under torchrun each process takes the GPU of its local rank."""
    if device.type != "cuda" or not processes.distributed:
        return device
    device = torch.device("cuda", processes.local_rank)
    torch.cuda.set_device(device)
    return device


def _train(config: TrainConfig, resume: bool, progress: bool, processes: Processes, device: torch.device,
           on_iteration: Callable[[int, DensePoseRCNN], None] | None) -> Path:
    """Train one stage (the earlier stages it names first) to its end; its final weights."""
    if config.average_of:
        return _write_average(config, progress, processes, device)
    config, train_sets = _resolve_stage(config, resume, progress, processes, device)
    output = Path(config.output)
    torch.manual_seed(config.seed)
    model = build_training_model(config).to(device)
    loop = _student_loop(config, model, device, processes, progress)
    start = _resume_point(loop, resume)
    if start >= config.solver.max_iter and (output / FINAL).is_file():
        return output / FINAL
    batches = _training_batches(config, train_sets, start, processes)
    network = _network(model, config, processes, device)
    log = _open_run_folder(config, processes, start)
    try:
        loop.run(start, lambda _: next(batches), network, _student_hooks(config, model, log, processes, progress, on_iteration))
    finally:
        if log is not None:
            log.close()
    return _write_final(model, config, processes)


def _write_average(config: TrainConfig, progress: bool, processes: Processes, device: torch.device) -> Path:
    """A run that trains nothing itself: the runs of `average_of` are trained (stage configs,
    each resumed or skipped as finished) and the mean of their final weights (soup.py) is its
    final weights."""
    _check_stage_chain(config)
    sources = [_train_earlier_stage(Path(source), progress, processes, device) if is_stage_config(source) else Path(source)
               for source in config.average_of]
    final = Path(config.output) / FINAL
    if processes.main:
        model = average_checkpoints(sources)
        save_checkpoint(model, final, averaged=[str(source) for source in sources], train_config=config.to_dict())
        if progress:
            print(f"densepose train: the mean of {len(sources)} runs' weights -> {final}", file=sys.stderr)
    barrier(processes)
    return final


def _resolve_stage(config: TrainConfig, resume: bool, progress: bool, processes: Processes,
                   device: torch.device) -> tuple[TrainConfig, tuple[DatasetConfig, ...]]:
    """The stage as it will train, and its training sets: the output folder checked, the data on
    disk, the teacher's dense labels written under distillation (they replace data.train), and an
    earlier stage named by init_weights trained so that init_weights names its weights."""
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
    return config, train_sets


def _student_loop(config: TrainConfig, model: DensePoseRCNN, device: torch.device, processes: Processes,
                  progress: bool) -> ResumableLoop:
    """The loop over `model`, whose checkpoints `load_model` reads (weights, architecture and the
    training state beside them)."""
    def write(path: Path, state: dict[str, Any]) -> None:
        save_checkpoint(export_model(model), path, **state, train_config=config.to_dict())

    loop_config = LoopConfig(
        config.solver, config.checkpoint_period, config.log_period, label="training",
        divergence_advice="lower solver.base_lr, lengthen the warmup or enable solver.clip_gradients, "
                          "then resume from the last checkpoint",
    )
    files = CheckpointFiles(Path(config.output), "model_", LAST_CHECKPOINT)
    return ResumableLoop(loop_config, model, files, write, device, processes, progress)


def _resume_point(loop: ResumableLoop, resume: bool) -> int:
    """The iteration to start at: 0, or with `resume` that of the newest checkpoint (restored)."""
    if not resume:
        return 0
    if loop.files.latest() is None:
        raise DensePoseError(f"nothing to resume in {loop.files.folder}: it has no {LAST_CHECKPOINT} (start without --resume)")
    return loop.restore()


def _training_batches(config: TrainConfig, train_sets: tuple[DatasetConfig, ...], start: int,
                      processes: Processes) -> Iterator[list]:
    """This process's batches (lists of TrainingSample) from iteration `start` on: the stream is
    a function of the seed and the iteration, so a resumed run continues it exactly."""
    source = training_source(train_sets)
    data = config.data
    augmentation = Augmentation(data.min_size_train, data.max_size_train, data.random_flip, load_flip_symmetry(data.uv_symmetry))
    dataset = TrainingDataset(source, len(source), augmentation, config.seed)
    sampler = StreamBatchSampler(len(source), config.solver.ims_per_batch, config.seed, start, processes.rank, processes.world_size)
    return build_train_loader(dataset, sampler, data.num_workers)


def _network(model: DensePoseRCNN, config: TrainConfig, processes: Processes, device: torch.device) -> torch.nn.Module:
    """Samples -> named losses; under torchrun wrapped in DDP, which averages the gradients."""
    network: torch.nn.Module = TrainingModel(model, config.loss)
    if processes.distributed:
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    return network


def _open_run_folder(config: TrainConfig, processes: Processes, start: int) -> MetricsLog | None:
    """The main process writes the resolved config and opens the metrics log (dropping the lines
    after `start`, which a resumed run writes again); the others write nothing."""
    if not processes.main:
        return None
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_write(output / "config.yaml", "w") as handle:
        handle.write(dump_train_config(config))
    return MetricsLog(output / METRICS_LOG, start)


def _student_hooks(config: TrainConfig, model: DensePoseRCNN, log: MetricsLog | None, processes: Processes,
                   progress: bool, on_iteration: Callable[[int, DensePoseRCNN], None] | None) -> LoopHooks:
    """The metrics log, the loss curves redrawn at each checkpoint, the held-out evaluations and
    the caller's `on_iteration`."""
    def after_iteration(done: int) -> None:
        _evaluate_during_training(done, config, model, log, processes, progress)
        if on_iteration is not None:
            on_iteration(done, model)

    return LoopHooks(on_log=log.write if log is not None else None, on_checkpoint=lambda _: _redraw_curves(config),
                     after_iteration=after_iteration)


def _redraw_curves(config: TrainConfig) -> None:
    """OUTPUT/loss_curves.png from the metrics log as it stands."""
    output = Path(config.output)
    plot_metrics(read_metrics(output / METRICS_LOG), output / PLOT, output.name)


def _evaluate_during_training(done: int, config: TrainConfig, model: DensePoseRCNN, log: MetricsLog | None,
                              processes: Processes, progress: bool) -> None:
    """Every eval_period iterations and after the last, the main process evaluates the held-out
    set and logs the summary; the others wait for it."""
    if config.data.val is None:
        return
    if not (config.eval_period and done % config.eval_period == 0) and done != config.solver.max_iter:
        return
    if processes.main:
        summary = run_evaluation(model, config, progress)["summary"]
        log.write({"iteration": done, "eval": summary})
        _redraw_curves(config)
        tqdm.write("iteration {}: {}".format(done, ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())))
    barrier(processes)
    model.train()  # evaluation left it in eval mode


def _write_final(model: DensePoseRCNN, config: TrainConfig, processes: Processes) -> Path:
    """The trained weights alone (main process), once every process has finished."""
    final = Path(config.output) / FINAL
    if processes.main:
        save_checkpoint(export_model(model), final, iteration=config.solver.max_iter, train_config=config.to_dict())
    barrier(processes)
    return final
