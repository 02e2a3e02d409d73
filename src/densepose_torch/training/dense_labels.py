"""Dense labels from the distillation teacher: for every person with DensePose points and
dp_masks, the teacher's part, U and V at the centres of a grid x grid lattice over the person's
box frame, kept where the annotated mask says "body", appended to the person's own sparse
points. The result is an ordinary DensePose-COCO file, so the student trains on it unchanged.

    OUT/annotations.json      the training file with the extra points (written last, atomically)
    OUT/labels/NNNNNNN.json   the new point lists of image N (one file per image, atomic)
    OUT/labeller.json         which teacher weights and lattice wrote them

An interrupted run resumes: images whose file exists are not labelled again. Labels written by
other teacher weights or another lattice are never mixed in: that is an error.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.densepose_coco import DP_POINT_KEYS, decode_coarse_segmentation, load_annotation_file
from ..errors import DensePoseError
from ..io.atomic import atomic_write
from ..io.images import read_image
from ..modeling import ChartOutputs
from .config import DatasetConfig, TrainConfig
from .datasets import dataset_files
from .losses import DP_FRAME
from .teacher import TeacherNet, load_teacher, teacher_outputs, train_teacher


def _labelled(annotation: dict) -> bool:
    return not annotation.get("iscrowd", 0) and all(key in annotation for key in DP_POINT_KEYS) and bool(annotation.get("dp_masks"))


def grid_labels(outputs: ChartOutputs, index: int, mask: np.ndarray, grid: int) -> dict[str, list]:
    """The teacher's points of person `index`: lattice cell centres (box frame, 0..256) where
    the 256 x 256 `mask` is set, with the part argmax over the 24 parts (the mask already says
    where the body is) and that part's U, V clipped to [0, 1], read at the crop pixel under
    each centre."""
    size = outputs["fine_segm"].shape[-1]
    centres = (np.arange(grid) + 0.5) * DP_FRAME / grid
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    inside = mask[ys.astype(np.int64), xs.astype(np.int64)]
    xs, ys = xs[inside], ys[inside]
    rows = torch.from_numpy((ys * size / DP_FRAME).astype(np.int64))
    cols = torch.from_numpy((xs * size / DP_FRAME).astype(np.int64))
    parts = outputs["fine_segm"][index, 1:, rows, cols].argmax(dim=0) + 1
    u = outputs["u"][index, parts, rows, cols].clamp(0, 1)
    v = outputs["v"][index, parts, rows, cols].clamp(0, 1)
    return {
        "dp_x": [round(float(x), 3) for x in xs], "dp_y": [round(float(y), 3) for y in ys],
        "dp_I": [int(p) for p in parts], "dp_U": [round(float(a), 5) for a in u], "dp_V": [round(float(b), 5) for b in v],
    }


def _weights_digest(teacher: TeacherNet) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_dense_labels(
    teacher: TeacherNet, annotations: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, grid: int,
    progress: bool = True,
) -> Path:
    """Label one training set (annotations + image folder) into `out`; returns the new
    annotation file. Done sets are not redone."""
    out = Path(out)
    stamp = {"teacher": _weights_digest(teacher), "grid": grid, "source": str(Path(annotations).resolve())}
    stamp_path = out / "labeller.json"
    if stamp_path.is_file():
        if json.loads(stamp_path.read_text(encoding="utf-8")) != stamp:
            raise DensePoseError(f"{out} holds labels of another teacher, lattice or training set; delete it to relabel")
    elif out.exists() and any(out.iterdir()):
        raise DensePoseError(f"{out} is not empty and holds no {stamp_path.name}; choose another distillation.output")
    else:
        with atomic_write(stamp_path, "w") as handle:
            json.dump(stamp, handle)
    final = out / "annotations.json"
    if final.is_file():
        return final
    data = load_annotation_file(annotations)
    by_image: dict = {}
    for position, annotation in enumerate(data["annotations"]):
        if _labelled(annotation):
            by_image.setdefault(annotation.get("image_id"), []).append(position)
    folder = Path(images)
    parts = out / "labels"
    parts.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    for number, image in enumerate(tqdm(data["images"], desc="dense labels", unit="image", disable=not progress)):
        positions = by_image.get(image.get("id"), [])
        path = parts / f"{number:07d}.json"
        if not positions or path.is_file():
            continue
        bgr = np.ascontiguousarray(read_image(folder / image["file_name"])[:, :, ::-1])
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (data["annotations"][p]["bbox"] for p in positions)], np.float64)
        outputs = teacher_outputs(teacher, bgr, boxes)
        labels = {}
        for k, position in enumerate(positions):
            mask = decode_coarse_segmentation(data["annotations"][position]["dp_masks"]) > 0
            labels[str(position)] = grid_labels(outputs, k, mask, grid)
        with atomic_write(path, "w") as handle:
            json.dump(labels, handle)

    merged = dict(data, annotations=[dict(a) for a in data["annotations"]])
    added = 0
    for number, image in enumerate(data["images"]):
        path = parts / f"{number:07d}.json"
        if not path.is_file():
            continue
        for position, extra in json.loads(path.read_text(encoding="utf-8")).items():
            annotation = merged["annotations"][int(position)]
            for key in DP_POINT_KEYS:
                annotation[key] = list(annotation[key]) + extra[key]
            added += len(extra["dp_x"])
    info = dict(merged.get("info") or {})
    if isinstance(info.get("dense_root"), str):  # keep pointing at the source set's dense maps
        info["dense_root"] = str((Path(annotations).parent / info["dense_root"]).resolve())
    info["dense_labels"] = {"source": str(Path(annotations).resolve()), "grid": grid, "teacher_points": added}
    merged["info"] = info
    if added == 0:
        raise DensePoseError(f"{annotations}: no person with DensePose points and dp_masks to label")
    with atomic_write(final, "w") as handle:
        json.dump(merged, handle)
    return final


def _label_folders(config: TrainConfig) -> list[tuple[Path, Path, Path]]:
    """(source annotations, images, label folder) of every training set."""
    folders = []
    for k, dataset in enumerate(config.data.train):
        files = dataset_files(dataset, write=False)
        if files is None:
            raise DensePoseError("distillation needs the training sets on disk (synthetic sets need a `cache` folder)")
        folders.append((files[0], files[1], Path(config.distillation.output) / f"labels_{k}"))
    return folders


def distilled_train_sets(config: TrainConfig) -> tuple[DatasetConfig, ...]:
    """The training sets with the teacher's dense labels (what the student trains on)."""
    return tuple(DatasetConfig(annotations=str(folder / "annotations.json"), images=str(images))
                 for _, images, folder in _label_folders(config))


def prepare_dense_labels(config: TrainConfig, progress: bool = True) -> tuple[DatasetConfig, ...]:
    """Train the teacher (or finish training it), write the dense labels of every training set
    (or finish writing them); returns distilled_train_sets(config)."""
    teacher = load_teacher(train_teacher(config, progress), config.device)
    for source, images, folder in _label_folders(config):
        write_dense_labels(teacher, source, images, folder, config.distillation.label_grid, progress)
    return distilled_train_sets(config)
