"""From the `data` section of a config to image sources: DensePose-COCO folders, synthetic sets
written to a cache folder first (resumably, by the main process), or synthetic scenes rendered
on the fly."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.densepose_coco import PersonAnnotation, read_records, training_records
from ..data.loader import RecordSource, SyntheticSource
from ..errors import DensePoseError
from .config import DatasetConfig, SyntheticDatasetConfig


def write_synthetic_cache(synthetic: SyntheticDatasetConfig, progress: bool = True) -> tuple[Path, Path]:
    """Render the set into its cache folder and return its (annotations.json, images folder).
    Finished images are kept, so this resumes an interrupted render; a folder made with other
    settings is an error."""
    from ..synthetic.dataset import SynthJob, write_dataset

    out = Path(synthetic.cache)
    job = SynthJob(out=out, seed=synthetic.seed, size=synthetic.size,
                   backgrounds=Path(synthetic.backgrounds) if synthetic.backgrounds else None, num_points=synthetic.num_points)
    write_dataset(job, synthetic.count, workers=1, progress=progress)
    return out / "annotations.json", out / "images"


def dataset_files(dataset: DatasetConfig, write: bool, progress: bool = True) -> tuple[Path, Path] | None:
    """(annotations, images) of an on-disk set (a synthetic cache is written first when
    `write`), or None for scenes rendered on the fly."""
    if dataset.synthetic is None:
        return Path(dataset.annotations), Path(dataset.images)
    if dataset.synthetic.cache is None:
        return None
    if write:
        return write_synthetic_cache(dataset.synthetic, progress)
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
            sources.append(SyntheticSource(s.size, s.seed, s.count, s.num_points, s.backgrounds))
        else:
            records = training_records(read_records(*files))
            if not records:
                raise DensePoseError(f"{files[0]} has no image with DensePose annotations to train on")
            sources.append(RecordSource(records))
    return ConcatSource(sources)
