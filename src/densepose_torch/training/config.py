"""What a training run does, as small frozen dataclasses read from a YAML file.

    model:   the architecture (ModelConfig fields; `zoo: NAME` starts from a zoo architecture)
    data:    training and held-out sets, augmentation, loader workers
    solver:  SGD, learning-rate schedule, clipping, AMP
    loss:    RPN / ROI sampling and the DensePose loss weights
    (top level: initial weights, backbone normalisation, seed, output, periods)

Defaults are detectron2's for the improved-baseline DensePose R-CNN; a key not in the file keeps
its default. `load_train_config(path, ["solver.base_lr=0.02", ...])` applies command-line
overrides, whose values are read as YAML (numbers, lists, null).

A file may start from another: `base: other.yaml` (relative to the file) lays the file's values
over that file's, mappings merged key by key and anything else (lists, scalars, null) replaced;
bases may have bases of their own. Overrides apply to the merged result.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import ModelConfig
from ..errors import DensePoseError
from ..zoo import get_zoo_model


@dataclass(frozen=True)
class SyntheticDatasetConfig:
    """Scenes of the synthetic engine: image i is the scene of seed (seed, i). With `cache` the
    set is written there once (as `densepose synth` writes it, resumable) and read back;
    without, scenes are rendered on the fly by the loader workers."""

    count: int
    seed: int = 0
    size: int = 512
    num_points: int = 100
    backgrounds: str | None = None  # a folder of pictures, or scikit-image (synthetic.backgrounds)
    look: Literal["plain", "photo"] = "plain"  # synthetic.scene.SceneConfig.look
    # Standing height of a person / image height, drawn log-uniformly (above 1: close-ups, the
    # person cut by the frame); None: SceneConfig.person_height_fraction.
    person_height: tuple[float, float] | None = None
    # Share of scenes with nobody in them; None: the look's own (0.1 for photo, 0 for plain).
    empty_share: float | None = None
    cache: str | None = None

    def __post_init__(self) -> None:
        from ..synthetic.scene import check_scene_settings

        check_scene_settings(self.person_height, self.empty_share)  # when the config is read, not in a loader worker


@dataclass(frozen=True)
class DatasetConfig:
    """A DensePose-COCO annotation file and its image folder, or a synthetic set."""

    annotations: str | None = None
    images: str | None = None
    synthetic: SyntheticDatasetConfig | None = None
    # Train the chart head on every body pixel's part, U and V (the dense ground truth of a set
    # written by `densepose synth`) instead of on the annotated points.
    dense: bool = False
    # Keep images in which nobody is annotated (detectron2 drops them, as a COCO image without
    # annotations may still show people): right for synthetic sets, where everyone is annotated,
    # and the only images that show the detector nothing but things that are not people.
    keep_empty: bool = False

    def __post_init__(self) -> None:
        on_disk = self.annotations is not None or self.images is not None
        if on_disk == (self.synthetic is not None) or (on_disk and (self.annotations is None or self.images is None)):
            raise DensePoseError("a dataset is either `annotations` + `images` (DensePose-COCO on disk) or `synthetic`")


@dataclass(frozen=True)
class DataConfig:
    train: tuple[DatasetConfig, ...]
    val: DatasetConfig | None = None
    val_limit: int | None = None  # evaluate on the first N held-out images only
    min_size_train: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    max_size_train: int = 1333
    random_flip: bool = True
    uv_symmetry: str | None = None  # UV_symmetry_transforms.mat; None: the synthetic body's own
    num_workers: int = 2  # loader processes; synthetic caches are rendered by as many
    eval_surface: str = "official"  # GPS body: official, official:DIR, synthetic or none
    eval_min_score: float = 0.5  # detections pasted into the part map for the part mIoU

    def __post_init__(self) -> None:
        if not self.train:
            raise DensePoseError("data.train needs at least one dataset")


@dataclass(frozen=True)
class SolverConfig:
    ims_per_batch: int = 16  # global batch, split over the processes
    optimizer: Literal["sgd", "adamw"] = "sgd"  # detectron2: SGD; AdamW for models trained from scratch
    base_lr: float = 0.01
    max_iter: int = 130000
    steps: tuple[int, ...] = (100000, 120000)
    gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 0.1
    warmup_method: Literal["linear", "constant"] = "linear"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0  # normalisation layers' scale and shift
    clip_gradients: Literal["value", "norm"] | None = None  # per parameter, as detectron2
    clip_value: float = 1.0  # 1.0 for "value"; the zoo's "norm" configs use 100.0
    amp: bool = False  # float16 autocast + loss scaling, CUDA only

    def __post_init__(self) -> None:
        if self.ims_per_batch < 1 or self.max_iter < 1:
            raise DensePoseError("solver.ims_per_batch and solver.max_iter must be positive")
        if list(self.steps) != sorted(self.steps):
            raise DensePoseError(f"solver.steps must increase, got {list(self.steps)}")


@dataclass(frozen=True)
class LossConfig:
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_iou_thresholds: tuple[float, float] = (0.3, 0.7)
    rpn_pre_nms_topk_train: int = 2000  # per FPN level
    rpn_post_nms_topk_train: int = 1000  # per image
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_iou_threshold: float = 0.5
    densepose_iou_threshold: float = 0.7  # proposals train DensePose above this IoU with their person
    densepose_rois_per_image: int | None = None  # a random subset of them (None: all, as detectron2)
    index_weight: float = 5.0  # coarse segmentation ("S"); 2.0 legacy
    part_weight: float = 1.0  # fine segmentation ("I"); 0.3 legacy
    point_weight: float = 0.01  # U/V; 0.1 legacy, 0.0005 with UV confidence
    # Dense sets (DatasetConfig.dense): the I, U and V losses are weighted means over the body
    # pixels of the ROIs, each pixel weighted by (pixels of its part in the batch) ** -balance:
    # 0 counts pixels (the torso dominates), 1 makes every part count the same.
    dense_part_balance: float = 0.5
    dense_uv_weight: float = 30.0  # U/V against I (weight part_weight), as point_weight is for points
    uv_confidence_epsilon: float = 0.01
    mask_weight: float = 1.0  # cascade mask branch (model.cascade_mask), each stage
    keypoint_weight: float = 1.0  # cascade keypoint branch (model.cascade_keypoints), each stage


@dataclass(frozen=True)
class TeacherConfig:
    """The distillation teacher (Güler et al. 2018, §4.2): a fully convolutional network (ResNet
    + FPN + the Panoptic-FPN decoder + a V1ConvX head and the chart predictor) applied to each
    person's ground-truth box, cut out and resized to crop_size x crop_size; trained on the
    sparse points only (with `segmentation`, also on the dp_masks foreground: that makes it a
    stand-alone fully convolutional DensePose model). With `whole_image` it sees each whole
    training image warped to crop_size x crop_size, all its people at once, instead of person
    crops: the paper's whole-image fully convolutional baseline, the ablation's first row."""

    depth: int = 18
    base_channels: int = 32
    fpn_channels: int = 64
    head_channels: int = 64
    head_convs: int = 4
    crop_size: int = 128
    segmentation: bool = False
    whole_image: bool = False
    crops_per_batch: int = 16
    max_iter: int = 2000
    base_lr: float = 0.001  # AdamW, linear warmup over the first 5 %, x0.1 for the last 20 %
    random_flip: bool = True
    checkpoint_period: int = 250

    def __post_init__(self) -> None:
        if self.depth not in (18, 34, 50, 101):
            raise DensePoseError(f"distillation.teacher.depth must be 18, 34, 50 or 101, not {self.depth}")
        if self.crop_size < 32 or self.crop_size % 32:
            raise DensePoseError(f"distillation.teacher.crop_size must be a multiple of 32, not {self.crop_size}")
        if self.crops_per_batch < 1 or self.max_iter < 1:
            raise DensePoseError("distillation.teacher.crops_per_batch and max_iter must be positive")


@dataclass(frozen=True)
class DistillationConfig:
    """Train the teacher on data.train, let it inpaint dense labels inside every annotated
    person's mask (written to `output`), then train the model on those labels plus the sparse
    ones instead of the sparse ones alone."""

    output: str
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    label_grid: int = 32  # dense labels at the centres of a label_grid^2 grid over the person's box

    def __post_init__(self) -> None:
        if not 4 <= self.label_grid <= 256:
            raise DensePoseError(f"distillation.label_grid must be in 4..256, not {self.label_grid}")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    solver: SolverConfig = field(default_factory=SolverConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    init_weights: str | None = None  # checkpoint, zoo name, ImageNet .pkl, or an earlier stage's config .yaml; parts that fit are loaded
    grow_head: bool = False  # with init_weights: its smaller DensePose head grows into this model's (init.grow_densepose_head)
    average_of: tuple[str, ...] = ()  # runs (stage configs .yaml or checkpoints) whose mean weights this run writes; it trains nothing itself (soup.py)
    backbone_norm: Literal["frozen", "bn"] = "frozen"  # "bn": trainable batch norm, frozen on export
    freeze_at: int = 2  # 0: train everything; 1: freeze the stem; 2: stem and res2 (detectron2)
    seed: int = 0
    output: str = "out/train"
    device: str | None = None  # default: cuda when available (the local rank's GPU), else cpu
    checkpoint_period: int = 5000
    eval_period: int = 0  # 0: evaluate after the last iteration only
    log_period: int = 20
    threads: int | None = None  # torch CPU threads (None: torch's default)
    distillation: DistillationConfig | None = None  # train on a teacher's dense labels (see DistillationConfig)

    def __post_init__(self) -> None:
        if self.freeze_at not in (0, 1, 2, 3, 4, 5):
            raise DensePoseError(f"freeze_at must be 0..5, not {self.freeze_at}")
        if self.grow_head and not self.init_weights:
            raise DensePoseError("grow_head grows the DensePose head of init_weights: set init_weights")
        if self.average_of and (self.init_weights or self.distillation is not None):
            raise DensePoseError("average_of writes the mean of other runs' weights and trains nothing: it takes no init_weights or distillation")
        if len(self.average_of) == 1:
            raise DensePoseError("average_of: name at least two runs to average")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` (parsed YAML) checked against the type `hint`, lists turned into tuples and
    mappings into dataclasses."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except DensePoseError as error:
                errors.append(str(error))
        raise DensePoseError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a {_type_name(hint)}")
    if origin is Literal:
        if value not in args:
            raise DensePoseError(f"{where} must be one of {', '.join(repr(a) for a in args)}, not {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise DensePoseError(f"{where} must be a list, not {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise DensePoseError(f"{where} must have {len(args)} entries, not {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DensePoseError(f"{where} must be a number, not {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DensePoseError(f"{where} must be an integer, not {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise DensePoseError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise DensePoseError(f"{where} must be a string, not {value!r}")
        return str(value)
    return value


def build_dataclass(cls: type, values: Any, where: str) -> Any:
    """An instance of dataclass `cls` from a mapping, every field type-checked."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise DensePoseError(f"{where} must be a mapping of {cls.__name__} fields, not {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise DensePoseError(f"unknown key {_key(where, unknown[0])} (known: {', '.join(names)})")
    kwargs = {name: _coerce(values[name], hints[name], _key(where, name)) for name in names if name in values}
    try:
        return cls(**kwargs)
    except TypeError as error:  # a required field is missing
        raise DensePoseError(f"{where or 'config'}: {error}".replace("__init__() ", "")) from None


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _model_config(values: Any) -> ModelConfig:
    if not isinstance(values, dict):
        raise DensePoseError(f"model must be a mapping of ModelConfig fields, not {values!r}")
    values = dict(values)
    zoo = values.pop("zoo", None)
    base = get_zoo_model(str(zoo)).architecture.to_dict() if zoo is not None else {}
    return build_dataclass(ModelConfig, {**base, **values}, "model")


def _set_override(tree: dict, override: str) -> None:
    if "=" not in override:
        raise DensePoseError(f"override {override!r} is not KEY=VALUE (e.g. solver.base_lr=0.02)")
    key, text = override.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise DensePoseError(f"override {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def train_config_from_dict(tree: dict, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    tree = _plain(tree)
    for override in overrides:
        _set_override(tree, override)
    if "model" not in tree or "data" not in tree:
        raise DensePoseError("a training config needs `model` and `data` sections")
    tree["model"] = _model_config(tree["model"])
    return build_dataclass(TrainConfig, tree, "")


def load_train_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file (and its bases), with KEY=VALUE overrides applied."""
    return train_config_from_dict(_read_with_bases(Path(path), ()), overrides)


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    """The mapping of `path` laid over that of its `base` file, recursively; `chain` holds the
    files that include this one, to report a cycle instead of recursing forever."""
    here = path.resolve()
    if here in chain:
        raise DensePoseError("config files base each other in a cycle: " + " -> ".join(str(p) for p in chain + (here,)))
    tree = _read_mapping(path)
    if "base" not in tree:
        return tree
    name = tree.pop("base")
    if not isinstance(name, str) or not name.strip():
        raise DensePoseError(f"{path}: base must be the path of another config file, not {name!r}")
    base = path.parent / name  # relative to this file, so a config works from any working directory
    if not base.exists():
        raise DensePoseError(f"{path}: its base file {base} does not exist")
    return merge_config_trees(_read_with_bases(base, chain + (here,)), tree)


def _read_mapping(path: Path) -> dict:
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DensePoseError(f"no such config file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DensePoseError(f"cannot read config file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise DensePoseError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(tree, dict):
        raise DensePoseError(f"{path} must hold a mapping with `model`, `data`, `solver`, ... sections")
    return tree


def merge_config_trees(base: dict, over: dict) -> dict:
    """`over` laid on `base`: mappings present in both merge key by key; any other value of
    `over` (a list, a scalar, null) replaces the base's whole, so a list is never half-inherited."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config_trees(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_train_config(config: TrainConfig) -> str:
    """The resolved config as YAML (every value spelled out)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
