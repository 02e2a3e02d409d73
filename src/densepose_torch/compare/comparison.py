"""A whole comparison: resolve models and images, fill the cache, measure, write the report."""
from __future__ import annotations

import datetime
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from ..devices import resolve_device
from ..errors import DensePoseError
from ..inference import Precision, precision_name
from ..io.coco_results import result_to_records
from ..io.images import read_image
from ..io.npz import read_npz
from ..render import PRESETS
from .agreement import NUM_PARTS, mean_agreement, mean_iou, pairwise_part_counts
from .inputs import ImageItem, folder_images, ground_truth_images
from .models import load_predictor, resolve_models
from .report import Report, write_report, write_thumbnail
from .runner import (
    Loader,
    ModelRun,
    RunSettings,
    pair_paths,
    read_pair_timing,
    run_models,
)
from .summary import columns, model_row

if TYPE_CHECKING:  # jobs.ray imports this package's modules
    from ..jobs.ray import RayOptions


@dataclass(frozen=True)
class CompareConfig:
    models: tuple[str, ...]  # `--models` arguments: all, default, zoo names, checkpoint paths (comma lists)
    images: Path
    output: Path
    ground_truth: Path | None = None
    surface: str | None = None  # for GPS with ground truth, as `densepose evaluate --surface` (None: as the set says)
    device: str | None = None  # default: cuda if available, else cpu
    precision: Precision = "exact"
    batch_size: int | None = None  # default: 1 on the CPU (where Predictor runs images one by one anyway), 4 on CUDA
    limit: int | None = None
    render: str = "viton"
    min_score: float = 0.8
    warmup: bool = True
    trust_checkpoint: bool = False  # as load_model's: lets checkpoint files that need it run code
    ray: RayOptions | None = None  # spread the model x image grid over a Ray cluster (jobs.ray)


@dataclass(frozen=True)
class Comparison:
    index: Path
    runs: list[ModelRun]
    rows: list[dict[str, Any]]


def _check(config: CompareConfig) -> str:
    """The device to run on, after checking the settings (on Ray: the actors' device type, which
    this machine need not have)."""
    if config.render not in PRESETS:
        raise DensePoseError(f"unknown render preset {config.render!r} (choose from {', '.join(PRESETS)})")
    if not 0.0 <= config.min_score <= 1.0:
        raise DensePoseError(f"--min-score must be between 0 and 1, not {config.min_score}")
    if config.output.exists() and not config.output.is_dir():
        raise DensePoseError(f"report folder {config.output} exists and is not a folder")
    if config.ray is not None:
        from ..jobs.ray import import_ray

        import_ray()
        # The Ray workers' device, checked where they run (the driver may have no GPU to resolve).
        return config.device or ("cuda" if config.ray.gpus_per_actor > 0 else "cpu")
    return str(resolve_device(config.device))


def _ground_truth(config: CompareConfig):
    """(ground truth restricted to the compared images, those images, body surface, its name)."""
    from ..evaluation import load_ground_truth
    from ..evaluation.surface_names import resolve_surface, surface_for

    gt = load_ground_truth(config.ground_truth)
    images = ground_truth_images(gt.dataset, config.images, config.limit)
    gt = gt.only_images(image.image_id for image in images)
    name = surface_for(gt.dataset, config.surface)
    return gt, images, resolve_surface(name), name


def evaluate_run(run: ModelRun, images: list[ImageItem], gt, surface) -> dict:
    """The evaluator's metrics of a model's cached results: every detection it returned."""
    from ..evaluation import evaluate

    records = []
    for image in images:
        records += result_to_records(read_npz(pair_paths(run.folder, image)[0]), image.image_id, file_name=image.name)
    return evaluate(gt, records, surface)


@dataclass(frozen=True)
class _Scan:
    detections: dict[str, list[int]]
    agreement: list[list[float | None]]
    image_thumbnails: list[str]
    grid: list[list[tuple[str, str]]]


def _scan(ran: list[ModelRun], images: list[ImageItem], config: CompareConfig, progress: bool) -> _Scan:
    """One pass over the images: every model's result at the minimum score, its picture and
    detections, and the part-map agreement counts."""
    render = PRESETS[config.render]
    detections: dict[str, list[int]] = {run.spec.name: [] for run in ran}
    intersections = np.zeros((len(ran), len(ran), NUM_PARTS), np.int64)
    unions = np.zeros_like(intersections)
    image_thumbnails, grid = [], []
    for image in tqdm(images, desc="report", unit="image", disable=not progress, leave=False):
        rgb = read_image(image.path)
        thumbnail = f"thumbnails/images/{image.key}.jpg"
        write_thumbnail(config.output / thumbnail, rgb)
        image_thumbnails.append(thumbnail)
        part_maps, row = [], []
        for run in ran:
            # a pair predicted at a lower threshold than this report's serves it too
            result = read_npz(pair_paths(run.folder, image)[0]).above(config.min_score)
            detections[run.spec.name].append(len(result))
            part_maps.append(result.to_dense().I)
            picture = f"thumbnails/{run.folder.name}/{image.key}.jpg"
            write_thumbnail(config.output / picture, render(rgb, result))
            row.append((picture, f"{len(result)} detection{'s' if len(result) != 1 else ''}"))
        grid.append(row)
        counted = pairwise_part_counts(part_maps)
        intersections += counted[0]
        unions += counted[1]
    return _Scan(detections, mean_iou(intersections, unions), image_thumbnails, grid)


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            processor = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), processor)
    except OSError:
        pass
    return f"{processor}, {os.cpu_count()} CPUs, torch threads: {torch.get_num_threads()}"


def compare(config: CompareConfig, loader: Loader | None = None, progress: bool = True) -> Comparison:
    """Run the comparison `config` describes and write its report into `config.output`. `loader`
    makes each model's predictor (default: load_predictor, with `config.trust_checkpoint`)."""
    from .. import __version__

    device = _check(config)
    loader = loader or functools.partial(load_predictor, trust_checkpoint=config.trust_checkpoint)
    specs = resolve_models(list(config.models))
    gt = surface = surface_name = None
    if config.ground_truth is not None:
        gt, images, surface, surface_name = _ground_truth(config)
    else:
        images = folder_images(config.images, config.limit, exclude=config.output)
    batch_size = config.batch_size or (4 if torch.device(device).type == "cuda" else 1)
    # Without ground truth only the people above --min-score are ever shown, so only they reach
    # the DensePose head; AP needs every detection the model makes.
    settings = RunSettings(device, precision_name(config.precision), batch_size, config.warmup,
                           None if gt is not None else config.min_score)
    if config.ray is not None:
        from ..jobs.ray import compare_on_ray

        runs = compare_on_ray(specs, images, config.output / "cache", settings, loader, config.ray, progress)
    else:
        runs = run_models(specs, images, config.output / "cache", settings, loader, progress)
    ran = [run for run in runs if run.ran]

    timings = {run.spec.name: [read_pair_timing(run.folder, image, settings.min_score) for image in images] for run in ran}
    for name, records in timings.items():
        if any(record is None for record in records):
            raise DensePoseError(f"the cached results of {name} changed while the report was written; run the comparison again")
    evaluations = {}
    if gt is not None:
        for run in tqdm(ran, desc="evaluating", unit="model", disable=not progress, leave=False):
            evaluations[run.spec.name] = evaluate_run(run, images, gt, surface)
    scan = _scan(ran, images, config, progress)
    report = _report(config, runs, images, timings, evaluations, scan, {
        "images": str(config.images), "ground truth": str(config.ground_truth) if gt is not None else "none",
        "surface": surface_name if gt is not None else "-", "device": device, "device name": _device_name(device),
        "precision": settings.precision, "batch size": batch_size, "limit": config.limit or "none",
        "render": config.render, "min score": config.min_score, "torch": torch.__version__,
        "densepose-torch": __version__, "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    return Comparison(write_report(config.output, report), runs, report.rows)


def _report(
    config: CompareConfig, runs: list[ModelRun], images: list[ImageItem], timings: dict[str, list[dict]],
    evaluations: dict[str, dict], scan: _Scan, settings: dict[str, Any],
) -> Report:
    ran = [run for run in runs if run.ran]
    with_ground_truth = config.ground_truth is not None
    means = mean_agreement(scan.agreement)
    mean_of = dict(zip((run.spec.name for run in ran), means))
    table = columns(with_ground_truth)
    rows = []
    for run in runs:
        seconds = [record["seconds"] for record in timings.get(run.spec.name, [])]
        rows.append(model_row(run, seconds, scan.detections.get(run.spec.name, []), evaluations.get(run.spec.name),
                              mean_of.get(run.spec.name), table))
    if with_ground_truth:
        quality_key, quality_label, quality_limits = "gpsm_ap", "GPSm AP on the ground truth", (0.0, 100.0)
    else:
        quality_key, quality_label, quality_limits = "mean_agreement", "mean agreement with the other models", (0.0, 1.0)
    points = [(row["model"], row["images_per_s"], row[quality_key]) for row in rows
              if row["images_per_s"] is not None and row[quality_key] is not None]

    computed = sum(run.computed for run in runs)
    skipped = len(runs) - len(ran)
    lead = (f"{len(ran)} of {len(runs)} models ran on {len(images)} images of {config.images}"
            f"{f' against {config.ground_truth}' if with_ground_truth else ''}, on {settings['device']} ({settings['precision']})"
            f"{f'; {skipped} skipped (see their status)' if skipped else ''}. "
            f"{computed} of {len(ran) * len(images)} results were computed by the latest run, the others came from the cache.")
    extra: dict[str, Any] = {
        "per_image": {
            name: {"latency_ms": [round(record["seconds"] * 1000, 2) for record in records], "detections": scan.detections[name]}
            for name, records in timings.items()
        },
        "memory": {run.spec.name: run.memory_kind for run in ran},
        "cache": {run.spec.name: str(run.folder.relative_to(config.output)) for run in runs},
    }
    if evaluations:
        extra["evaluation"] = evaluations
    names = [run.spec.name for run in ran]
    return Report(
        title="DensePose model comparison", lead=lead, table=table, rows=rows, plot_points=points,
        quality_label=quality_label, quality_limits=quality_limits, agreement_models=names, agreement=scan.agreement,
        agreement_means=means, images=[image.name for image in images], image_thumbnails=scan.image_thumbnails,
        grid_models=names, grid=scan.grid, settings=settings, extra=extra,
    )
