"""Training data: DensePose-COCO annotation files (and our synthetic sets, which use the same
format), the per-image augmentation, and the batches the trainer consumes.

    densepose_coco   reading annotation files into ImageRecords, detectron2's dataset filter
    transforms       resize to a random short side, horizontal flip with part / UV symmetry
    mapper           one augmented image with its boxes and DensePose targets (TrainingSample)
    loader           image sources, the resumable batch order, multi-worker loading
"""
from ..chart_symmetry import FlipSymmetry, load_flip_symmetry
from .densepose_coco import (
    DensePosePoints,
    ImageRecord,
    PersonAnnotation,
    read_records,
    training_records,
)
from .loader import (
    RecordSource,
    StreamBatchSampler,
    SyntheticSource,
    TrainingDataset,
    build_train_loader,
)
from .mapper import Augmentation, InstanceDensePose, TrainingSample, map_sample

__all__ = [
    "Augmentation",
    "DensePosePoints",
    "FlipSymmetry",
    "ImageRecord",
    "InstanceDensePose",
    "PersonAnnotation",
    "RecordSource",
    "StreamBatchSampler",
    "SyntheticSource",
    "TrainingDataset",
    "TrainingSample",
    "build_train_loader",
    "load_flip_symmetry",
    "map_sample",
    "read_records",
    "training_records",
]
