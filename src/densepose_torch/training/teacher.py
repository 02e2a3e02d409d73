"""The distillation teacher (Güler et al. 2018, §4.2, "inpainting"): a fully convolutional
network on ground-truth person crops, trained on the sparse annotated points, whose dense
predictions inside each person's mask become the student's training labels.

A crop is the person's box warped to crop_size x crop_size, which is exactly the box frame the
annotations use (dp_x, dp_y and dp_masks live in the box scaled to 256 x 256), so the losses are
the region-based ones with the proposal equal to the person box. `train_teacher` trains on the
configured device with the resumable loop of `loop.py`: `OUTPUT/teacher_NNNNNNN.pth`
checkpoints (weights, optimizer, RNG states, iteration) named by `OUTPUT/last_teacher_checkpoint`,
batches that are a function of the iteration; `OUTPUT/teacher_final.pth` holds the trained weights.

With `whole_image` the same network is the paper's whole-image fully convolutional baseline:
each input is a whole training image and its people are one target in the image's frame.
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ..allocator import keep_freed_memory
from ..chart_symmetry import FlipSymmetry, load_flip_symmetry
from ..config import ModelConfig
from ..data.densepose_coco import (
    DP_MASK_SIZE,
    PersonAnnotation,
    read_records,
    training_records,
)
from ..data.mapper import InstanceDensePose, person_densepose
from ..definitions import CHART_FIELDS
from ..devices import resolve_device
from ..errors import DensePoseError
from ..inference import Predictor
from ..io.atomic import atomic_write
from ..io.images import ImageInput, read_image, to_rgb_array
from ..modeling import DensePoseRCNN
from ..modeling.densepose_heads import ChartPredictor, Decoder, V1ConvXHead
from ..modeling.densepose_rcnn import PIXEL_MEAN_BGR
from ..modeling.fpn import FPN
from ..modeling.resnet import ResNet
from ..ops.roi_align import roi_align
from ..postprocessing import charts_from_outputs
from ..results import DensePoseResult
from .config import LossConfig, SolverConfig, TeacherConfig, TrainConfig
from .datasets import dataset_files
from .init import (
    export_model,
    initialize_backbone,
    initialize_convolutions,
    prepare_backbone,
)
from .loop import CheckpointFiles, LoopConfig, ResumableLoop
from .losses import DensePoseTargets, densepose_losses, pack_densepose_targets

TEACHER_FORMAT = "densepose-torch-teacher-1"
TEACHER_FINAL = "teacher_final.pth"
TEACHER_LAST = "last_teacher_checkpoint"
CHARTS = ModelConfig()  # the chart predictor's layout: 2 coarse channels, no confidences


class TeacherNet(nn.Module):
    """(N, 3, S, S) BGR 0..255 person crops -> chart outputs (N, C, S, S) at the crop's resolution."""

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.backbone = FPN(ResNet(config.depth, config.base_channels), config.fpn_channels)
        self.decoder = Decoder(config.fpn_channels)
        self.head = V1ConvXHead(config.fpn_channels, config.head_channels, config.head_convs)
        self.predictor = ChartPredictor(CHARTS, config.head_channels)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(crops - self.pixel_mean)
        return self.predictor(self.head(self.decoder(features[:4])))


def initialize_teacher(model: TeacherNet) -> None:
    initialize_backbone(model.backbone)
    initialize_convolutions([model.decoder, model.head, model.predictor])


def crop_person(bgr: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The XYXY `box` of an (H, W, 3) image warped (bilinear) to (size, size, 3): output pixel j
    samples the box at x0 + (j + 0.5) * width / size, the box frame the annotations use."""
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = max(x1 - x0, 1e-3) / size, max(y1 - y0, 1e-3) / size
    # Output -> source, in OpenCV's pixel-centre-at-integer convention.
    matrix = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], dtype=np.float64)
    return cv2.warpAffine(bgr, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def teacher_outputs(teacher: TeacherNet, bgr: np.ndarray, boxes: np.ndarray) -> dict[str, torch.Tensor]:
    """Chart outputs (N, C, S, S) of the teacher for the XYXY `boxes` of a BGR image: on their
    crops, or for a `whole_image` teacher cut from its outputs on the whole image."""
    if teacher.config.whole_image:
        return _cut_from_whole_image(teacher, bgr, boxes)
    return _outputs_on_crops(teacher, bgr, boxes)


def _outputs_on_crops(teacher: TeacherNet, bgr: np.ndarray, boxes: np.ndarray, chunk: int = 16) -> dict[str, torch.Tensor]:
    size = teacher.config.crop_size
    crops = np.stack([crop_person(bgr, box, size) for box in boxes]) if len(boxes) else np.zeros((0, size, size, 3), np.uint8)
    batch = torch.from_numpy(crops.transpose(0, 3, 1, 2).copy()).float().to(teacher.device)
    pieces: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(batch), chunk):
            for name, value in teacher(batch[start : start + chunk]).items():
                pieces.setdefault(name, []).append(value.float())
    return {name: torch.cat(values) for name, values in pieces.items()}


def _cut_from_whole_image(teacher: TeacherNet, bgr: np.ndarray, boxes: np.ndarray, size: int = 56) -> dict[str, torch.Tensor]:
    """The image is seen once, whatever the number of people; each box's charts are RoIAligned
    from the outputs at `size` (56: the charts of a region-based head pooling 14 x 14)."""
    height, width = bgr.shape[:2]
    maps = _outputs_on_crops(teacher, bgr, np.array([[0.0, 0.0, width, height]]))
    side = teacher.config.crop_size
    frame = torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)) * torch.tensor([side / width, side / height] * 2)
    rois = torch.cat([torch.zeros((len(frame), 1)), frame], dim=1).to(teacher.device)
    return {name: roi_align(value, rois, size, 1.0, 2, aligned=True) for name, value in maps.items()}


@dataclass(frozen=True)
class TeacherExample:
    """One input of the teacher: the region of an image it sees (a person's box, or the whole
    image) and the annotated people it learns from there."""

    image: Path
    box: np.ndarray  # (4,) XYXY, image pixels
    people: tuple[PersonAnnotation, ...]


def teacher_examples(config: TrainConfig) -> list[TeacherExample]:
    """The teacher's inputs in the on-disk training sets: every non-crowd person with DensePose
    points, or with `whole_image` every image whose non-crowd people all have points and
    dp_masks (an unannotated person would be taught as background)."""
    whole_image = config.distillation.teacher.whole_image
    examples = []
    for dataset in config.data.train:
        files = dataset_files(dataset, write=False)
        if files is None:
            raise DensePoseError("distillation needs the training sets on disk (synthetic sets need a `cache` folder)")
        for record in training_records(read_records(*files)):
            people = tuple(p for p in record.persons if not p.crowd)
            if not whole_image:
                examples += [TeacherExample(record.path, p.box, (p,)) for p in people if p.points is not None]
            elif all(p.points is not None and p.masks is not None for p in people):
                examples.append(TeacherExample(record.path, np.array([0.0, 0.0, record.width, record.height]), people))
    if not examples:
        what = "image whose people all have DensePose points and masks" if whole_image else "person with DensePose points"
        raise DensePoseError(f"distillation: the training sets have no {what}")
    return examples


def image_densepose(example: TeacherExample, flip: bool, symmetry: FlipSymmetry) -> InstanceDensePose:
    """The targets of all the example's people as one instance in the frame of its box (256 x
    256, as a person's own targets), mirrored when `flip`. Where people overlap, the coarse
    maps keep the larger part index."""
    x0, y0, x1, y1 = (float(v) for v in example.box)
    scale_x, scale_y = DP_MASK_SIZE / (x1 - x0), DP_MASK_SIZE / (y1 - y0)
    pieces = []
    segm = np.zeros((DP_MASK_SIZE, DP_MASK_SIZE), np.uint8)
    for person in example.people:
        target = person_densepose(person, flip, symmetry)
        px0, py0, px1, py1 = (float(v) for v in person.box)
        if flip:
            px0, px1 = x0 + x1 - px1, x0 + x1 - px0
        # Person frame -> example frame: an affine map per axis.
        kx, ky = (px1 - px0) * scale_x / DP_MASK_SIZE, (py1 - py0) * scale_y / DP_MASK_SIZE
        tx, ty = (px0 - x0) * scale_x, (py0 - y0) * scale_y
        pieces.append((target.x * kx + tx, target.y * ky + ty, target.parts, target.u, target.v))
        # OpenCV puts pixel centres at integers; our frames put them at i + 0.5.
        matrix = np.array([[kx, 0.0, tx + 0.5 * kx - 0.5], [0.0, ky, ty + 0.5 * ky - 0.5]])
        placed = cv2.warpAffine(target.coarse_segm, matrix, (DP_MASK_SIZE, DP_MASK_SIZE), flags=cv2.INTER_NEAREST, borderValue=0)
        np.maximum(segm, placed, out=segm)
    x, y, parts, u, v = (np.concatenate(column) for column in zip(*pieces))
    return InstanceDensePose(x.astype(np.float32), y.astype(np.float32), parts, u, v, segm)


def teacher_batch(examples: list[TeacherExample], config: TeacherConfig, symmetry: FlipSymmetry, seed: int, iteration: int,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, DensePoseTargets]:
    """Crops (N, 3, S, S) float and their DensePoseTargets for one iteration, on `device` (a
    function of the seed and the iteration only, so a resumed run sees the same batches)."""
    rng = np.random.default_rng(np.random.SeedSequence((seed, iteration, 7)))
    count = config.crops_per_batch
    chosen = rng.choice(len(examples), size=count, replace=len(examples) < count)
    size = config.crop_size
    crops, instances = [], []
    for index in chosen:
        example = examples[int(index)]
        flip = config.random_flip and bool(rng.random() < 0.5)
        bgr = np.ascontiguousarray(read_image(example.image)[:, :, ::-1])
        crop = crop_person(bgr, example.box, size)
        if flip:
            crop = crop[:, ::-1]
        crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        if config.whole_image:
            instances.append(image_densepose(example, flip, symmetry))
        else:
            instances.append(person_densepose(example.people[0], flip, symmetry))
    # The crop is the targets' frame, so the "proposal" and the person box are both the whole crop.
    frame = torch.tensor([[0.0, 0.0, float(size), float(size)]], device=device).repeat(count, 1)
    targets = pack_densepose_targets(frame, frame.clone(), instances)  # on the frame's device
    if not config.segmentation:
        targets.coarse_segm = None  # the paper's teacher learns from the points alone
    return torch.from_numpy(np.stack(crops)).to(device, torch.float32), targets


def teacher_solver(config: TeacherConfig) -> SolverConfig:
    return SolverConfig(
        ims_per_batch=config.crops_per_batch, optimizer="adamw", base_lr=config.base_lr, max_iter=config.max_iter,
        steps=(int(0.8 * config.max_iter),), warmup_iters=max(1, config.max_iter // 20), warmup_factor=0.001,
    )


def _save(path: Path, model: TeacherNet, **extra) -> None:
    state = {k: v.detach().cpu() for k, v in export_model(model).state_dict().items()}
    with atomic_write(path) as handle:
        torch.save({"format": TEACHER_FORMAT, "config": dataclasses.asdict(model.config), "model": state, **extra}, handle)


def load_teacher(path: str | Path, device: str | torch.device | None = None) -> TeacherNet:
    """A trained teacher (any teacher checkpoint) on `device` (resolved as every command resolves
    --device: None is the first GPU when torch can use one, else the CPU), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise DensePoseError(f"no such teacher checkpoint: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and containers: nothing to run
    if not isinstance(data, dict) or data.get("format") != TEACHER_FORMAT:
        raise DensePoseError(f"{path} is not a teacher checkpoint (written by densepose train with a distillation section)")
    model = TeacherNet(TeacherConfig(**data["config"]))
    model.load_state_dict(data["model"])
    return model.to(resolve_device(device)).eval()


def build_teacher(config: TeacherConfig, seed: int) -> TeacherNet:
    """The teacher as training starts (seeded initialisation, trainable batch norm), in train mode."""
    torch.manual_seed(seed)
    model = TeacherNet(config)
    initialize_teacher(model)
    prepare_backbone(model, "bn", 0)
    return model.train()


def train_teacher(config: TrainConfig, progress: bool = True) -> Path:
    """Train (or finish training) the teacher of `config.distillation` in its output folder, on
    the configured device; returns the final checkpoint. A finished teacher is not trained again."""
    distillation = config.distillation
    if distillation is None:
        raise DensePoseError("the config has no distillation section")
    teacher = distillation.teacher
    output = Path(distillation.output)
    final = output / TEACHER_FINAL
    if final.is_file():
        return final
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        keep_freed_memory()
    examples = teacher_examples(config)
    symmetry = load_flip_symmetry(config.data.uv_symmetry)
    model = build_teacher(teacher, config.seed).to(device)
    loop = _teacher_loop(teacher, model, output, device, progress)
    start = loop.restore()

    def batch(iteration: int) -> tuple[torch.Tensor, DensePoseTargets]:
        return teacher_batch(examples, teacher, symmetry, config.seed, iteration, device)

    loop.run(start, batch, _teacher_losses(model, LossConfig()))
    _save(final, model, iteration=teacher.max_iter)
    what = "images" if teacher.whole_image else "people"
    print(f"densepose train: teacher trained on {len(examples)} {what} -> {final}", file=sys.stderr)
    return final


def _teacher_loop(teacher: TeacherConfig, model: TeacherNet, output: Path, device: torch.device, progress: bool) -> ResumableLoop:
    """The loop over the teacher: checkpoints OUTPUT/teacher_NNNNNNN.pth (its own format, which
    `load_teacher` reads), none at the end (teacher_final.pth is written instead)."""
    def write(path: Path, state: dict[str, Any]) -> None:
        _save(path, model, **state)

    loop_config = LoopConfig(
        teacher_solver(teacher), teacher.checkpoint_period, checkpoint_at_end=False, label="teacher",
        loss_name="the teacher's loss", divergence_advice="lower distillation.teacher.base_lr",
        model_section="distillation.teacher",
    )
    return ResumableLoop(loop_config, model, CheckpointFiles(output, "teacher_", TEACHER_LAST), write, device, progress=progress)


def _teacher_losses(model: TeacherNet, loss: LossConfig) -> Callable[[tuple[torch.Tensor, DensePoseTargets]], dict[str, torch.Tensor]]:
    """(crops (N, 3, S, S), their targets) -> the region-based DensePose losses, the crop being the proposal."""
    def losses(batch: tuple[torch.Tensor, DensePoseTargets]) -> dict[str, torch.Tensor]:
        crops, targets = batch
        outputs = {k: v.float() for k, v in model(crops).items()}
        return densepose_losses(outputs, targets, CHARTS, loss)

    return losses


class TeacherPredictor:
    """The teacher as a stand-alone fully convolutional DensePose model: a detector's person
    boxes (and scores), the teacher's charts on their crops (or, for a `whole_image` teacher, cut
    from its outputs on the whole image). Its foreground is the teacher's coarse segmentation, so
    the teacher must be trained with `segmentation`."""

    def __init__(self, teacher: TeacherNet, detector: DensePoseRCNN) -> None:
        self.teacher = teacher.eval()
        self.detector = Predictor(detector)

    def __call__(self, image: ImageInput) -> DensePoseResult:
        rgb = to_rgb_array(image, "rgb")
        detections = self.detector(rgb)
        boxes = detections.boxes.astype(np.float64)
        charts = []
        if len(boxes):
            outputs = teacher_outputs(self.teacher, np.ascontiguousarray(rgb[:, :, ::-1]), boxes)
            outputs = {k: v for k, v in outputs.items() if k in CHART_FIELDS}
            charts = charts_from_outputs(torch.from_numpy(detections.boxes), outputs)
        return DensePoseResult(detections.image_size, detections.boxes, detections.scores, charts)
