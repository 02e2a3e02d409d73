"""The distillation teacher (Güler et al. 2018, §4.2, "inpainting"): a fully convolutional
network on ground-truth person crops, trained on the sparse annotated points, whose dense
predictions inside each person's mask become the student's training labels.

A crop is the person's box warped to crop_size x crop_size, which is exactly the box frame the
annotations use (dp_x, dp_y and dp_masks live in the box scaled to 256 x 256), so the losses are
the region-based ones with the proposal equal to the person box. `train_teacher` is resumable:
`OUTPUT/teacher_NNNNNNN.pth` checkpoints (weights, optimizer, iteration) and the batches are a
function of the iteration; `OUTPUT/teacher_final.pth` holds the trained weights.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..config import ModelConfig
from ..data.densepose_coco import PersonAnnotation, read_records, training_records
from ..data.mapper import person_densepose
from ..data.transforms import FlipSymmetry, load_flip_symmetry
from ..errors import DensePoseError
from ..inference import Predictor
from ..io.atomic import atomic_write
from ..io.images import ImageInput, read_image, to_rgb_array
from ..modeling import DensePoseRCNN
from ..modeling.densepose_heads import ChartPredictor, Decoder, V1ConvXHead
from ..modeling.densepose_rcnn import PIXEL_MEAN_BGR
from ..modeling.fpn import FPN
from ..modeling.resnet import ResNet
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
from .losses import densepose_losses, pack_densepose_targets
from .solver import build_optimizer, learning_rate

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


def teacher_outputs(teacher: TeacherNet, bgr: np.ndarray, boxes: np.ndarray, chunk: int = 16) -> dict[str, torch.Tensor]:
    """Chart outputs (N, C, S, S) of the teacher on the crops of XYXY `boxes` of a BGR image."""
    size = teacher.config.crop_size
    crops = np.stack([crop_person(bgr, box, size) for box in boxes]) if len(boxes) else np.zeros((0, size, size, 3), np.uint8)
    batch = torch.from_numpy(crops.transpose(0, 3, 1, 2).copy()).float().to(teacher.device)
    pieces: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(batch), chunk):
            for name, value in teacher(batch[start : start + chunk]).items():
                pieces.setdefault(name, []).append(value.float())
    return {name: torch.cat(values) for name, values in pieces.items()}


@dataclass(frozen=True)
class PersonCrop:
    """A person with DensePose points: where to find it (image path, annotation)."""

    image: Path
    person: PersonAnnotation


def annotated_people(config: TrainConfig) -> list[PersonCrop]:
    """Every non-crowd person with DensePose points in the on-disk training sets."""
    people = []
    for dataset in config.data.train:
        files = dataset_files(dataset, write=False)
        if files is None:
            raise DensePoseError("distillation needs the training sets on disk (synthetic sets need a `cache` folder)")
        for record in training_records(read_records(*files)):
            people += [PersonCrop(record.path, p) for p in record.persons if p.points is not None and not p.crowd]
    if not people:
        raise DensePoseError("distillation: the training sets have no person with DensePose points")
    return people


def teacher_batch(people: list[PersonCrop], config: TeacherConfig, symmetry: FlipSymmetry, seed: int, iteration: int):
    """Crops (N, 3, S, S) float and their DensePoseTargets for one iteration (a function of the
    seed and the iteration only, so a resumed run sees the same batches)."""
    rng = np.random.default_rng(np.random.SeedSequence((seed, iteration, 7)))
    count = config.crops_per_batch
    chosen = rng.choice(len(people), size=count, replace=len(people) < count)
    size = config.crop_size
    crops, instances = [], []
    for index in chosen:
        entry = people[int(index)]
        flip = config.random_flip and bool(rng.random() < 0.5)
        bgr = np.ascontiguousarray(read_image(entry.image)[:, :, ::-1])
        crop = crop_person(bgr, entry.person.box, size)
        if flip:
            crop = crop[:, ::-1]
        crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        instances.append(person_densepose(entry.person, flip, symmetry))
    # The crop is the person's box, so the "proposal" and the person box are both the whole crop.
    frame = torch.tensor([[0.0, 0.0, float(size), float(size)]]).repeat(count, 1)
    targets = pack_densepose_targets(frame, frame.clone(), instances)
    if not config.segmentation:
        targets.coarse_segm = None  # the paper's teacher learns from the points alone
    return torch.from_numpy(np.stack(crops)).float(), targets


def teacher_solver(config: TeacherConfig) -> SolverConfig:
    return SolverConfig(
        ims_per_batch=config.crops_per_batch, optimizer="adamw", base_lr=config.base_lr, max_iter=config.max_iter,
        steps=(int(0.8 * config.max_iter),), warmup_iters=max(1, config.max_iter // 20), warmup_factor=0.001,
    )


def _save(path: Path, model: TeacherNet, **extra) -> None:
    state = {k: v.detach().cpu() for k, v in export_model(model).state_dict().items()}
    with atomic_write(path) as handle:
        torch.save({"format": TEACHER_FORMAT, "config": dataclasses.asdict(model.config), "model": state, **extra}, handle)


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> TeacherNet:
    """A trained teacher (any teacher checkpoint), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise DensePoseError(f"no such teacher checkpoint: {path}")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != TEACHER_FORMAT:
        raise DensePoseError(f"{path} is not a teacher checkpoint (written by densepose train with a distillation section)")
    model = TeacherNet(TeacherConfig(**data["config"]))
    model.load_state_dict(data["model"])
    return model.to(device).eval()


def train_teacher(config: TrainConfig, progress: bool = True) -> Path:
    """Train (or finish training) the teacher of `config.distillation` in its output folder;
    returns the final checkpoint. A finished teacher is not trained again."""
    distillation = config.distillation
    if distillation is None:
        raise DensePoseError("the config has no distillation section")
    teacher = distillation.teacher
    output = Path(distillation.output)
    final = output / TEACHER_FINAL
    if final.is_file():
        return final
    if config.threads:
        torch.set_num_threads(config.threads)
    people = annotated_people(config)
    symmetry = load_flip_symmetry(config.data.uv_symmetry)
    solver = teacher_solver(teacher)
    loss = LossConfig()
    torch.manual_seed(config.seed)
    model = TeacherNet(teacher)
    initialize_teacher(model)
    prepare_backbone(model, "bn", 0)
    model.train()
    optimizer = build_optimizer(model, solver)
    start = 0
    pointer = output / TEACHER_LAST
    if pointer.is_file():
        data = torch.load(output / pointer.read_text(encoding="utf-8").strip(), map_location="cpu", weights_only=False)
        missing, unexpected = model.load_state_dict(data["model"], strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise DensePoseError(f"the teacher checkpoint in {output} does not fit distillation.teacher; was it changed?")
        optimizer.load_state_dict(data["optimizer"])
        torch.set_rng_state(data["rng"])
        start = int(data["iteration"])
    bar = tqdm(total=solver.max_iter, initial=start, desc="teacher", unit="it", disable=not progress, dynamic_ncols=True)
    for iteration in range(start, solver.max_iter):
        crops, targets = teacher_batch(people, teacher, symmetry, config.seed, iteration)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(solver, iteration)
        outputs = {k: v.float() for k, v in model(crops).items()}
        losses = densepose_losses(outputs, targets, CHARTS, loss)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise DensePoseError(f"the teacher's loss became {total.item()} at iteration {iteration}; lower distillation.teacher.base_lr")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        done = iteration + 1
        bar.update(1)
        bar.set_postfix(loss=f"{total.item():.3f}")
        if done % teacher.checkpoint_period == 0 and done < solver.max_iter:
            name = f"teacher_{done:07d}.pth"
            _save(output / name, model, optimizer=optimizer.state_dict(), iteration=done, rng=torch.get_rng_state())
            with atomic_write(pointer, "w") as handle:
                handle.write(name + "\n")
    bar.close()
    _save(final, model, iteration=solver.max_iter)
    print(f"densepose train: teacher trained on {len(people)} people -> {final}", file=sys.stderr)
    return final


class TeacherPredictor:
    """The teacher as a stand-alone fully convolutional DensePose model: a detector's person
    boxes (and scores), the teacher's charts on their crops. Its foreground is the teacher's
    coarse segmentation, so the teacher must be trained with `segmentation`."""

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
            outputs = {k: v for k, v in outputs.items() if k in ("coarse_segm", "fine_segm", "u", "v")}
            charts = charts_from_outputs(torch.from_numpy(detections.boxes), outputs)
        return DensePoseResult(detections.image_size, detections.boxes, detections.scores, charts)
