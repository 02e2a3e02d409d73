"""Training batches: where images come from (a DensePose-COCO folder or the synthetic renderer),
in which order, and how they are loaded in parallel.

Order and augmentation are functions of the seed and of a sample's *stream position* (the n-th
image the run consumes: iteration * global batch + slot), never of worker scheduling or of how
many processes share the batch. So a run resumed at iteration k sees exactly the images and flips
it would have seen, and N processes with B/N images each see the same global batch as one
process with B.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DensePoseError
from ..io.images import read_image
from ..results import DenseMaps
from .dense_truth import box_dense_truth
from .densepose_coco import ImageRecord, PersonAnnotation, person_from_annotation
from .mapper import Augmentation, TrainingSample, map_sample

ImageSource = Callable[[int], tuple[np.ndarray, tuple[PersonAnnotation, ...]]]


class RecordSource:
    """Images of DensePose-COCO records read from disk: index -> (H, W, 3) BGR, persons. With
    `dense_paths` (one dense ground-truth file per record, synthetic sets) every person with
    DensePose points also carries the truth of all its body pixels."""

    def __init__(self, records: list[ImageRecord], dense_paths: list[Path] | None = None):
        if not records:
            raise DensePoseError("the training set has no usable image (none with DensePose annotations)")
        self.records = records
        self.dense_paths = dense_paths

    def __len__(self) -> int:
        return len(self.records)

    def __call__(self, index: int) -> tuple[np.ndarray, tuple[PersonAnnotation, ...]]:
        record = self.records[index]
        rgb = read_image(record.path)
        if rgb.shape[:2] != (record.height, record.width):
            raise DensePoseError(f"{record.path} is {rgb.shape[1]}x{rgb.shape[0]}, the annotations say {record.width}x{record.height}")
        persons = record.persons
        if self.dense_paths is not None:
            from ..synthetic.dataset import read_dense

            persons = with_dense_truth(persons, read_dense(self.dense_paths[index]))
        return np.ascontiguousarray(rgb[:, :, ::-1]), persons


class SyntheticSource:
    """Scenes rendered on the fly: image `index` is the scene of seed (seed, index), annotated
    as `densepose synth` annotates it (the renderer is built on first use, in each worker)."""

    def __init__(self, size: int, seed: int, count: int, num_points: int = 100, backgrounds: str | None = None,
                 look: str = "plain", dense: bool = False, person_height: tuple[float, float] | None = None,
                 empty_share: float | None = None):
        self.size, self.seed, self.count, self.num_points, self.backgrounds = size, seed, count, num_points, backgrounds
        self.look, self.dense, self.person_height, self.empty_share = look, dense, person_height, empty_share
        self._generator = None

    def __len__(self) -> int:
        return self.count

    def __call__(self, index: int) -> tuple[np.ndarray, tuple[PersonAnnotation, ...]]:
        from ..synthetic.coco import annotate_scene
        from ..synthetic.scene import SceneGenerator, scene_config

        if self._generator is None:
            config = scene_config(self.size, self.look, self.person_height, self.empty_share)
            self._generator = SceneGenerator(self.size, backgrounds=self.backgrounds, config=config)
        scene = self._generator.render((self.seed, index))
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, index, 1)))
        persons = tuple(person_from_annotation(ann) for ann in annotate_scene(scene, rng, self.num_points))
        if self.dense:
            persons = with_dense_truth(persons, DenseMaps(scene.I, scene.U, scene.V, scene.instance))
        return np.ascontiguousarray(scene.image[:, :, ::-1]), persons

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_generator"] = None  # workers build their own
        return state


def with_dense_truth(persons: tuple[PersonAnnotation, ...], maps: DenseMaps) -> tuple[PersonAnnotation, ...]:
    """`persons` with the dense truth of each one that has DensePose points and an instance id
    (the others stay as they are: they train the detector only)."""
    return tuple(
        replace(person, dense=box_dense_truth(maps, person.instance_id, person.box))
        if person.points is not None and person.instance_id is not None else person
        for person in persons)


class TrainingDataset(Dataset):
    """Map-style dataset whose keys are (stream position, image index)."""

    def __init__(self, source: ImageSource, length: int, augmentation: Augmentation, seed: int):
        self.source, self.length, self.augmentation, self.seed = source, length, augmentation, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: tuple[int, int]) -> TrainingSample:
        position, index = key
        bgr, persons = self.source(index)
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, position, 2)))
        sample = map_sample(bgr, persons, self.augmentation, rng)
        sample.seed = int(np.random.SeedSequence((self.seed, position, 4)).generate_state(1)[0])
        return sample


class StreamBatchSampler(Sampler):
    """Endless batches of (stream position, image index) for one process: iteration i covers
    positions [i * B, (i + 1) * B) of the stream, and rank r of W takes its B / W consecutive
    slots. Epoch e visits the images in a permutation drawn from (seed, e)."""

    def __init__(self, length: int, global_batch: int, seed: int, start_iteration: int = 0, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise DensePoseError(f"the batch size ({global_batch}) must be a multiple of the number of processes ({world_size})")
        self.length, self.global_batch, self.seed = length, global_batch, seed
        self.start_iteration, self.rank, self.world_size = start_iteration, rank, world_size
        self._epoch, self._order = -1, None

    def index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.length)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence((self.seed, epoch, 3)).generate_state(1)[0]))
            self._order = torch.randperm(self.length, generator=generator).tolist()
            self._epoch = epoch
        return self._order[offset]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_rank = self.global_batch // self.world_size
        iteration = self.start_iteration
        while True:
            first = iteration * self.global_batch + self.rank * per_rank
            yield [(position, self.index_at(position)) for position in range(first, first + per_rank)]
            iteration += 1


def _collate(samples: list[TrainingSample]) -> list[TrainingSample]:
    return samples


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the workers decode and resize; the main process owns the cores


def build_train_loader(dataset: TrainingDataset, sampler: StreamBatchSampler, num_workers: int) -> Iterator[list[TrainingSample]]:
    """An endless iterator of per-process batches (lists of TrainingSample)."""
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
    )
    return iter(loader)
