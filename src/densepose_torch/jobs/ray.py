"""DensePose over a Ray cluster: `densepose predict --ray` and `densepose compare --ray`, and a
callable class for people who already hold a Ray Dataset.

The work goes through Ray Data's `map_batches` with a callable class, so each actor loads its
model once and keeps it: one actor per GPU, or per group of CPU cores. A predict job is cut into
work units (a batch of images, or one video: its people are tracked frame after frame); each
unit is one row of a dataset with one row per block, so that the units spread over the actors
and a retry redoes one unit. Workers write the outputs themselves, to the same paths a local run
writes, atomically, and skip outputs that exist: an actor whose process dies is restarted by Ray
and its unit run again (Ray Data's actor pools restart actors and retry their tasks without
limit), and the retry writes only what the dead process had not finished. The output folder
must be one path on a filesystem every node mounts, whose renames are atomic (NFS, CephFS,
Lustre, EFS; not bucket mounts through FUSE), written by one run at a time.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..compare.inputs import ImageItem
from ..compare.models import ModelSpec
from ..compare.runner import Loader, ModelRun, ModelSession, RunSettings, finished_run, pending_pairs
from ..errors import DensePoseError
from ..io.images import read_image
from ..io.inputs import InputItem
from .predict import (
    Job,
    LazyPredictor,
    ModelChoice,
    Plan,
    build_predictor,
    image_pending,
    remove_leftovers,
    runs_of_kind,
    video_pending,
)

INSTALL_HINT = "Ray is not installed: pip install 'densepose-torch[ray]'"
MAX_BLOCKS = 20000  # units per block grow beyond this many units, to bound Ray Data's bookkeeping
UNIT_IMAGES = 8  # images of one model per unit of a comparison (at least its batch size)


def import_ray():
    """The ray module with Ray Data, or a one-line DensePoseError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data comes with the [ray] extra, not with every Ray install
    except ImportError:
        raise DensePoseError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a job runs."""

    address: str | None = None  # a running cluster ("auto", "ray://host:10001", host:port); None: a local Ray instance
    actors: int | None = None  # model replicas (None: as many as the cluster's CPUs, or GPUs, hold)
    cpus_per_actor: float = 1.0  # also the torch threads of each actor
    gpus_per_actor: float = 0.0


def connect(options: RayOptions):
    """Join the cluster at `options.address`, or start a local instance (quiet: no dashboard, no
    Ray Data progress bars, since the driver shows the job's own)."""
    ray = import_ray()
    # Ray's C++ side warns on the driver's terminal about every actor whose constructor arguments sit in
    # the object store (all of Ray Data's): noise in the middle of the job's progress bar.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if not ray.is_initialized():
        try:
            ray.init(address=options.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = options.address or "a local instance"
            raise DensePoseError(f"cannot start or reach Ray at {where}: {' '.join(str(error).split())}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its progress notes would cut through the job's bar
    return ray


def actor_count(ray, options: RayOptions) -> int:
    """options.actors, or as many actors as the cluster's GPUs (when actors take GPUs) or CPUs hold."""
    if options.actors:
        return options.actors
    resources = ray.cluster_resources()
    if options.gpus_per_actor > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_actor))


@dataclass
class Tally:
    """A worker's stand-in for the progress bar: counts and messages, sent back to the driver."""

    done: int = 0
    messages: list[str] = field(default_factory=list)

    def update(self, n: int = 1) -> None:
        self.done += n

    def write(self, message: str, file=None) -> None:
        self.messages.append(message)


class PredictWorker:
    """The actor of `densepose predict --ray`: runs work units of one job (by index) with the
    job's own code, and returns what happened to each."""

    def __init__(self, plan: Plan, predictor: LazyPredictor, batch_size: int, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.plan, self.predictor, self.batch_size = plan, predictor, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self._unit(int(unit), pickle.loads(items)) for unit, items in zip(batch["unit"], batch["items"])]
        return _columns(rows)

    def _unit(self, unit: int, items: list[InputItem]) -> dict[str, Any]:
        tally = Tally()
        job = Job(self.plan, self.predictor, self.batch_size, tally, frame_bars=False)
        job.run(items)
        return {"unit": unit, "inputs": len(items), "skipped": job.skipped, "people": job.people,
                "failed": json.dumps(job.failed), "damaged": json.dumps(job.damaged), "messages": json.dumps(tally.messages)}


@dataclass
class RaySummary:
    inputs: int = 0
    skipped: int = 0
    people: int = 0
    failed: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def work_units(plan: Plan, items: list[InputItem], batch_size: int) -> tuple[list[list[InputItem]], int]:
    """(units, inputs already done): the unfinished images in batches of `batch_size`, each
    unfinished video alone, in input order."""
    units, skipped = [], 0
    for is_video, group in runs_of_kind(items):
        if is_video:
            if video_pending(plan, group[0]):
                units.append(group)
            else:
                skipped += 1
            continue
        pending = [item for item in group if image_pending(plan, item)]
        skipped += len(group) - len(pending)
        units += [pending[start : start + batch_size] for start in range(0, len(pending), batch_size)]
    return units, skipped


def predict_on_ray(plan: Plan, predictor: LazyPredictor, items: list[InputItem], batch_size: int, options: RayOptions,
                   progress) -> RaySummary:
    """Run the job of `plan` over `items` on Ray; `progress` (a tqdm bar over the inputs) moves
    as units finish, and shows the workers' messages."""
    summary = RaySummary(inputs=len(items))
    units, summary.skipped = work_units(plan, items, batch_size)
    progress.update(summary.skipped)
    if not units:
        return summary
    ray = connect(options)
    start = time.perf_counter()
    rows = [{"unit": k, "items": pickle.dumps(unit)} for k, unit in enumerate(units)]
    results = _map_units(ray, PredictWorker, rows, options, {"plan": plan, "predictor": predictor, "batch_size": batch_size})
    try:
        for row in results:
            summary.people += int(row["people"])
            summary.skipped += int(row["skipped"])
            summary.failed += json.loads(row["failed"])
            summary.damaged += json.loads(row["damaged"])
            for message in json.loads(row["messages"]):
                progress.write(message)
            progress.update(int(row["inputs"]))
    finally:
        remove_leftovers(plan.output_dir)  # temporary files of workers that were killed mid-write
    summary.seconds = time.perf_counter() - start
    return summary


class CompareWorker:
    """The actor of `densepose compare --ray`: runs units of (model, images) and fills the
    comparison's cache as a local run does. It keeps the last model it loaded, and the units come
    model after model, so an actor loads each model once."""

    def __init__(self, settings: RunSettings, loader: Loader, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.settings, self.loader = settings, loader
        self.loaded: tuple[str, ModelSession, Any] | None = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self._unit(int(unit), *pickle.loads(work)) for unit, work in zip(batch["unit"], batch["work"])]
        return _columns(rows)

    def _unit(self, unit: int, spec: ModelSpec, folder: Path, images: list[ImageItem]) -> dict[str, Any]:
        if self.loaded is None or self.loaded[0] != str(folder):
            self.loaded = None  # the previous model is freed first
            session = ModelSession(spec, folder, self.settings, self.loader)
            try:
                predictor = session.load()
            except DensePoseError as error:
                return {"unit": unit, "pairs": len(images), "error": str(error)}
            if self.settings.warmup:
                predictor.batch([read_image(images[0].path)], min_score=self.settings.min_score)
            self.loaded = (str(folder), session, predictor)
        _, session, predictor = self.loaded
        try:
            for start in range(0, len(images), self.settings.batch_size):
                session.predict(predictor, images[start : start + self.settings.batch_size])
        finally:
            session.record(folder / "model.json")
        return {"unit": unit, "pairs": len(images), "error": ""}


def compare_on_ray(specs: list[ModelSpec], images: list[ImageItem], cache_root: Path, settings: RunSettings, loader: Loader,
                   options: RayOptions, progress: bool = True) -> list[ModelRun]:
    """`compare.run_models` over a Ray cluster: the same cache, filled by actors."""
    from tqdm import tqdm

    plans = pending_pairs(specs, images, cache_root, settings)
    chunk = max(settings.batch_size, UNIT_IMAGES)
    units = [(spec, folder, pending[start : start + chunk])
             for spec, folder, pending in plans for start in range(0, len(pending), chunk)]
    errors: dict[str, str] = {}
    computed: dict[str, int] = {}
    if units:
        ray = connect(options)
        rows = [{"unit": k, "work": pickle.dumps(unit)} for k, unit in enumerate(units)]
        with tqdm(total=sum(len(unit[2]) for unit in units), desc="compare", unit="image", disable=not progress) as bar:
            for row in _map_units(ray, CompareWorker, rows, options, {"settings": settings, "loader": loader}):
                spec, _, chunk_images = units[int(row["unit"])]
                if row["error"]:
                    errors[spec.name] = str(row["error"])
                else:
                    computed[spec.name] = computed.get(spec.name, 0) + len(chunk_images)
                bar.update(int(row["pairs"]))
    runs = []
    for spec, folder, _ in plans:
        if spec.skip_reason is not None or spec.name in errors:
            runs.append(ModelRun(spec, folder, spec.skip_reason or errors[spec.name]))
        else:
            runs.append(finished_run(spec, folder, computed.get(spec.name, 0)))
    return runs


def _map_units(ray, worker: type, rows: list[dict[str, Any]], options: RayOptions, arguments: dict[str, Any]) -> Iterator[dict]:
    """The rows `worker` returns for `rows` (one work unit each, its own block, so that units
    spread over the actors and a retry redoes one), as they finish, from an actor pool of
    options' size; each actor is built with `arguments` and torch threads = its CPUs. The unit's
    work travels pickled in its row, between our own processes, so that the actors' constructor
    arguments stay small and Ray can always recreate a dead actor from them. A failed job is a
    one-line DensePoseError."""
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    results = dataset.map_batches(
        worker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actor_count(ray, options), len(rows))),
        num_cpus=options.cpus_per_actor, num_gpus=options.gpus_per_actor,
        fn_constructor_kwargs={**arguments, "threads": int(max(1, options.cpus_per_actor))},
    )
    try:
        yield from results.iter_rows()
    except ray.exceptions.RayError as error:
        raise DensePoseError(f"the Ray job failed: {_first_line(error)}") from None


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A worker's per-unit result rows as the column batch Ray Data expects back."""
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class RayBatchPredictor:
    """DensePose for `ray.data.Dataset.map_batches`: batches with an `image` column (H x W x 3
    uint8 RGB arrays, as `ray.data.read_images` gives them) in, the same batches with DensePose
    results out, the `image` column dropped. `output="arrays"` adds `boxes` (N x 4 XYXY),
    `scores`, and full-image `I` (uint8 part), `U`, `V` (float32) and `instance` (uint16, k = the
    k-th box) maps; `output="npz"` adds `npz`, the bytes of the file `densepose predict` writes.
    `flip` and `uv_symmetry` choose the test-time flip as `Predictor`'s do.

        ds = ray.data.read_images("s3://bucket/photos", include_paths=True)
        ds = ds.map_batches(RayBatchPredictor, fn_constructor_kwargs={"model": "default"},
                            batch_size=8, compute=ray.data.ActorPoolStrategy(size=4), num_cpus=2)
        ds.write_parquet("s3://bucket/densepose")
    """

    def __init__(self, model: str | None = None, device: str | None = None, min_score: float = 0.8, output: str = "arrays",
                 precision: str = "exact", threads: int | None = None, flip: bool | None = None, uv_symmetry: str | None = None):
        if output not in ("arrays", "npz"):
            raise DensePoseError(f"output must be arrays or npz, not {output!r}")
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.output = output
        self.predictor = build_predictor(ModelChoice(model, flip=flip, uv_symmetry=uv_symmetry), device, precision, min_score)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "image" not in batch:
            raise DensePoseError(f"the batch has no image column (columns: {', '.join(batch)})")
        images = [np.asarray(image) for image in batch["image"]]
        results = self.predictor.batch(images)
        out = {name: column for name, column in batch.items() if name != "image"}
        if self.output == "npz":
            from ..io.npz import npz_bytes

            out["npz"] = np.array([npz_bytes(result) for result in results], dtype=object)
            return out
        maps = [result.to_dense() for result in results]
        out["boxes"] = _objects([np.asarray(r.boxes, np.float32).reshape(-1, 4) for r in results])
        out["scores"] = _objects([np.asarray(r.scores, np.float32) for r in results])
        for name in ("I", "U", "V", "instance"):
            out[name] = _objects([getattr(m, name) for m in maps])
        return out


def _objects(arrays: list[np.ndarray]) -> np.ndarray:
    """A column of arrays of different shapes (one per row)."""
    column = np.empty(len(arrays), dtype=object)
    column[:] = arrays
    return column
