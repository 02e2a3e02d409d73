"""From the `data` section of a config to image sources: DensePose-COCO folders, synthetic sets
written to a cache folder first (resumably, by the main process), or synthetic scenes rendered
on the fly."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.densepose_coco import ImageRecord, PersonAnnotation, load_annotation_file, read_records, training_records
from ..data.loader import RecordSource, SyntheticSource
from ..errors import DensePoseError
from .config import DatasetConfig, SyntheticDatasetConfig


def write_synthetic_cache(synthetic: SyntheticDatasetConfig, progress: bool = True, workers: int = 1) -> tuple[Path, Path]:
    """Render the set into its cache folder (in `workers` processes: the same bytes whatever
    their number) and return its (annotations.json, images folder). Finished images are kept,
    so this resumes an interrupted render; a folder made with other settings is an error."""
    from ..synthetic.dataset import SynthJob, write_dataset

    out = Path(synthetic.cache)
    job = SynthJob(out=out, seed=synthetic.seed, size=synthetic.size, backgrounds=synthetic.backgrounds,
                   num_points=synthetic.num_points, look=synthetic.look, person_height=synthetic.person_height, empty_share=synthetic.empty_share)
    write_dataset(job, synthetic.count, workers=workers, progress=progress)
    return out / "annotations.json", out / "images"


def dataset_files(dataset: DatasetConfig, write: bool, progress: bool = True, workers: int = 1) -> tuple[Path, Path] | None:
    """(annotations, images) of an on-disk set (a synthetic cache is written first when
    `write`, by `workers` processes), or None for scenes rendered on the fly."""
    if dataset.synthetic is None:
        return Path(dataset.annotations), Path(dataset.images)
    if dataset.synthetic.cache is None:
        return None
    if write:
        return write_synthetic_cache(dataset.synthetic, progress, workers)
    cache = Path(dataset.synthetic.cache)
    return cache / "annotations.json", cache / "images"


class ConcatSource:
    """Several image sources seen as one: indices run through them in order."""

    def __init__(self, sources: list):
        self.sources = sources
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __call__(self, index: int) -> tuple[np.ndarray, tuple[PersonAnnotation, ...]]:
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[k](index - int(self.offsets[k]))


def training_source(datasets: tuple[DatasetConfig, ...]) -> ConcatSource:
    """The training images of all sets (caches must already be written)."""
    sources = []
    for dataset in datasets:
        files = dataset_files(dataset, write=False)
        if files is None:
            s = dataset.synthetic
            sources.append(SyntheticSource(s.size, s.seed, s.count, s.num_points, s.backgrounds, s.look, dataset.dense,
                                           s.person_height, s.empty_share))
            continue
        records = read_records(*files)
        if not dataset.keep_empty:
            records = training_records(records)
        if not records or not any(record.has_densepose for record in records):
            raise DensePoseError(f"{files[0]} has no image with DensePose annotations to train on")
        sources.append(RecordSource(records, dense_truth_paths(files[0], records) if dataset.dense else None))
    return ConcatSource(sources)


def dense_truth_paths(annotations: Path, records: list[ImageRecord]) -> list[Path]:
    """The dense ground-truth file of every record of a set written by `densepose synth`."""
    from ..synthetic.dataset import dense_truth_path

    data = load_annotation_file(annotations)
    paths = []
    for record in records:
        path = dense_truth_path(annotations, data, record.path.name)
        if path is None or not path.is_file():
            raise DensePoseError(f"{annotations}: dense: true needs a set written by densepose synth "
                                 f"(no dense ground truth for {record.path.name})")
        paths.append(path)
    return paths
