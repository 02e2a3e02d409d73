"""Predicting every image of a ground truth for its evaluation (`densepose evaluate --model`),
resumable: each finished image is appended to a partial file, so an interrupted run goes on
where it stopped."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ..errors import DensePoseError
from ..evaluation import GroundTruth
from ..io.coco_results import load_results, result_to_records, write_results
from ..results import DensePoseResult

Predict = Callable[[Path], DensePoseResult]


def _image_path(folder: Path, file_name: str) -> Path | None:
    for candidate in (folder / file_name, folder / Path(file_name).name):
        if candidate.is_file():
            return candidate
    return None


def _read_partial(path: Path) -> dict:
    """Per-image records saved by an interrupted run (a torn last line is dropped)."""
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[entry["file_name"]] = entry["records"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def _ground_truth_images(gt: GroundTruth, folder: Path) -> list[tuple[object, str, Path]]:
    """(image id, file_name, path) of every image of the ground truth, found in `folder` by
    file_name (or its base name)."""
    images = []
    for image in gt.dataset["images"]:
        name = image.get("file_name")
        path = _image_path(folder, name) if isinstance(name, str) else None
        if path is None:
            raise DensePoseError(f"image {image['id']!r} ({name or 'no file_name'}) of the ground truth is not in {folder}")
        images.append((image["id"], name, path))
    return images


def predict_ground_truth_images(
    gt: GroundTruth,
    images: str | os.PathLike,
    make_predictor: Callable[[], Predict],
    pred_out: str | os.PathLike | None = None,
    notice: Callable[[str], None] = print,
) -> list[dict]:
    """Results records of a model on every image of `gt`, found in the folder `images` by
    file_name. `make_predictor()` is called only if some image is still to predict. With
    `pred_out`, each finished image is appended to PRED_OUT.partial.jsonl and the complete
    records are then written to `pred_out` atomically; a finished `pred_out` is read back
    instead of predicting again (`notice` tells the user so)."""
    folder = Path(images)
    if not folder.is_dir():
        raise DensePoseError(f"no such image folder: {folder}")
    pred_out = Path(pred_out) if pred_out is not None else None
    if pred_out is not None and pred_out.is_file():
        notice(f"using the predictions in {pred_out} (delete it to predict again)")
        return load_results(pred_out, decode=False)
    listed = _ground_truth_images(gt, folder)
    partial = pred_out.with_name(pred_out.name + ".partial.jsonl") if pred_out else None
    done = _read_partial(partial) if partial else {}
    pending = [item for item in listed if item[1] not in done]
    if pending:
        _predict_pending(pending, make_predictor(), done, partial)
    records = [record for _, name, _ in listed for record in done[name]]
    if pred_out is not None:
        write_results(pred_out, records)
        partial.unlink(missing_ok=True)
    return records


def _predict_pending(pending: list[tuple[object, str, Path]], predict: Predict, done: dict, partial: Path | None) -> None:
    """Predict each pending image into `done` (file_name -> records), appending it to `partial`."""
    log = None
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        torn = partial.is_file() and not partial.read_bytes().endswith(b"\n") and partial.stat().st_size > 0
        log = open(partial, "a", encoding="utf-8")
        if torn:  # a line cut by a crash must not swallow the next one
            log.write("\n")
    try:
        for image_id, name, path in tqdm(pending, desc="predicting", unit="image"):
            records = result_to_records(predict(path), image_id, file_name=name)
            done[name] = records
            if log is not None:
                log.write(json.dumps({"file_name": name, "records": records}) + "\n")
                log.flush()
                os.fsync(log.fileno())
    finally:
        if log is not None:
            log.close()
