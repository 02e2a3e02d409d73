"""Running every model over every image, once: results and timings cached per (model, image).

    REPORT_DIR/cache/<model key>/model.json        load time and peak memory of the model's runs
    REPORT_DIR/cache/<model key>/<image key>.npz   the result (io.npz), every detection the model returns
    REPORT_DIR/cache/<model key>/<image key>.json  its timing; written last, so it marks the pair done

A model is loaded once and runs over its unfinished images in batches; an interrupted comparison
resumes with the pairs it had not finished. The model key changes with the weights file, the
precision and the device type, so a cached pair is never reused for another setting. Models
predict with the comparison's score threshold inside the box predictor (without ground truth;
with it, AP needs every detection); a pair predicted at a lower threshold, or at the model's own,
serves a higher one, since the detections above a threshold do not depend on it.
"""
from __future__ import annotations

import gc
import json
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from ..errors import DensePoseError
from ..inference import Precision
from ..io.atomic import atomic_write
from ..io.images import read_image
from ..io.npz import write_npz
from ..results import DensePoseResult
from .inputs import ImageItem
from .models import ModelSpec, cache_key, load_predictor, weights_path

PAIR_FORMAT = "densepose-compare-pair/1"


class BatchPredictor(Protocol):
    def batch(self, images: Sequence[np.ndarray], min_score: float | None = None) -> list[DensePoseResult]: ...


Loader = Callable[[ModelSpec, "Path | None", str, Precision], BatchPredictor]


@dataclass(frozen=True)
class RunSettings:
    device: str  # "cpu", "cuda", "cuda:1", ...
    precision: Precision
    batch_size: int
    warmup: bool = True  # one untimed image after loading, so that latencies exclude lazy initialisation
    min_score: float | None = None  # detections kept by the box predictor (None: the model's own threshold)


@dataclass(frozen=True)
class ModelRun:
    """A model after the run: its cache folder and measurements, or why it did not run."""

    spec: ModelSpec
    folder: Path
    skip_reason: str | None
    load_seconds: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    computed: int = 0  # pairs predicted by this run (the others came from the cache)

    @property
    def ran(self) -> bool:
        return self.skip_reason is None


def pair_paths(folder: Path, image: ImageItem) -> tuple[Path, Path]:
    return folder / f"{image.key}.npz", folder / f"{image.key}.json"


def serves(predicted_min_score: float | None, wanted_min_score: float | None) -> bool:
    """Whether results predicted at one threshold hold every detection above another (None is
    the model's own threshold, the lowest a comparison asks for)."""
    if predicted_min_score is None:
        return True
    return wanted_min_score is not None and predicted_min_score <= wanted_min_score


def read_pair_timing(folder: Path, image: ImageItem, min_score: float | None) -> dict | None:
    """The timing record of a finished pair that holds the detections above `min_score`; None if
    the pair is not finished, was predicted at a higher threshold, or its image file changed."""
    npz_path, json_path = pair_paths(folder, image)
    if not (json_path.is_file() and npz_path.is_file()):
        return None
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format") != PAIR_FORMAT or record.get("image") != image.fingerprint():
        return None
    return record if serves(record.get("min_score"), min_score) else None


def _reset_peak_memory(device: torch.device) -> str:
    """Start a fresh peak; returns what the peak will measure."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "CUDA allocated"
    try:
        # Linux resets the resident-set high-water mark (VmHWM) when 5 is written here.
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return "process RSS"
    except OSError:
        return "process RSS since start"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _read_model_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, record: dict) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(record, handle, indent=1)


def _batches(items: list[ImageItem], size: int) -> list[list[ImageItem]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class ModelSession:
    """One model's run over its unfinished images (in this process, or in a Ray actor)."""

    def __init__(self, spec: ModelSpec, folder: Path, settings: RunSettings, loader: Loader):
        self.spec, self.folder, self.settings, self.loader = spec, folder, settings, loader
        self.device = torch.device(settings.device)
        self.memory_kind = ""
        self.load_seconds: float | None = None
        self.computed = 0

    def load(self) -> BatchPredictor:
        weights = weights_path(self.spec)  # a download, if any, is not load time
        self.memory_kind = _reset_peak_memory(self.device)
        start = time.perf_counter()
        predictor = self.loader(self.spec, weights, self.settings.device, self.settings.precision)
        self.load_seconds = time.perf_counter() - start
        return predictor

    def predict(self, predictor: BatchPredictor, batch: list[ImageItem]) -> None:
        arrays = [read_image(image.path) for image in batch]
        start = time.perf_counter()
        results = predictor.batch(arrays, min_score=self.settings.min_score)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = (time.perf_counter() - start) / len(batch)
        for image, result in zip(batch, results):
            npz_path, json_path = pair_paths(self.folder, image)
            write_npz(npz_path, result)
            _write_json(json_path, {
                "format": PAIR_FORMAT, "image": image.fingerprint(), "seconds": seconds, "batch_size": len(batch),
                "detections": len(result), "device": self.settings.device, "precision": self.settings.precision,
                "min_score": self.settings.min_score,
            })
            self.computed += 1

    def record(self, path: Path) -> dict:
        """model.json updated with this session: the latest load time, the highest peak."""
        record = _read_model_record(path)
        peak = _peak_memory_mb(self.device)
        if self.load_seconds is not None:
            record.update(load_seconds=self.load_seconds, memory_kind=self.memory_kind,
                          peak_memory_mb=max(peak, record.get("peak_memory_mb") or 0.0))
        record.update(name=self.spec.name, kind=self.spec.kind, source=self.spec.source,
                      device=self.settings.device, precision=self.settings.precision)
        _write_json(path, record)
        return record


def pending_pairs(specs: list[ModelSpec], images: list[ImageItem], cache_root: Path,
                  settings: RunSettings) -> list[tuple[ModelSpec, Path, list[ImageItem]]]:
    """Each model with its cache folder and the images it has not finished (none for a model
    that will not run)."""
    device_type = torch.device(settings.device).type
    plans = []
    for spec in specs:
        folder = cache_root / cache_key(spec, settings.precision, device_type)
        pending = [] if spec.skip_reason is not None else [
            image for image in images if read_pair_timing(folder, image, settings.min_score) is None]
        plans.append((spec, folder, pending))
    return plans


def finished_run(spec: ModelSpec, folder: Path, computed: int = 0) -> ModelRun:
    """A model that ran, with the measurements its model.json holds."""
    record = _read_model_record(folder / "model.json")
    return ModelRun(spec, folder, None, record.get("load_seconds"), record.get("peak_memory_mb"), record.get("memory_kind"), computed)


def run_models(
    specs: list[ModelSpec], images: list[ImageItem], cache_root: Path, settings: RunSettings,
    loader: Loader = load_predictor, progress: bool = True,
) -> list[ModelRun]:
    """Fill the cache with every (model, image) result that is missing; a model whose weights
    cannot be had (or do not load) is skipped with the reason."""
    plans = pending_pairs(specs, images, cache_root, settings)
    runs = []
    # The bar counts only the pairs still to compute: skipped models and cached pairs are not work.
    with tqdm(total=sum(len(pending) for _, _, pending in plans), desc="compare", unit="image", disable=not progress,
              position=0) as bar:
        for spec, folder, pending in plans:
            if spec.skip_reason is not None:
                runs.append(ModelRun(spec, folder, spec.skip_reason))
                continue
            bar.set_postfix_str(spec.name)
            runs.append(_run_model(spec, folder, pending, settings, loader, bar))
            gc.collect()  # the model just run is freed before the next one's memory is measured
    return runs


def _run_model(spec: ModelSpec, folder: Path, pending: list[ImageItem], settings: RunSettings, loader: Loader, bar: tqdm) -> ModelRun:
    record_path = folder / "model.json"
    if not pending:
        return finished_run(spec, folder)
    session = ModelSession(spec, folder, settings, loader)
    try:
        predictor = session.load()
    except DensePoseError as error:
        bar.total -= len(pending)  # work that will not be done
        bar.refresh()
        return ModelRun(spec, folder, str(error))
    try:
        if settings.warmup:
            predictor.batch([read_image(pending[0].path)], min_score=settings.min_score)
        for batch in _batches(pending, settings.batch_size):
            session.predict(predictor, batch)
            bar.update(len(batch))
    finally:
        # Also on Ctrl-C: the measurements of the finished pairs are kept for the resumed run.
        record = session.record(record_path)
        del predictor
    return ModelRun(spec, folder, None, record.get("load_seconds"), record.get("peak_memory_mb"), record.get("memory_kind"), session.computed)
