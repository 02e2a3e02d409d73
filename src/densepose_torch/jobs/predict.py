"""One `densepose predict` run over many inputs: what to write where (`Plan`), the model loaded on
first use (`LazyPredictor`), and the work itself (`Job`): images in batches, videos frame by frame
with people tracked, outputs written atomically and skipped when they exist, so that a run resumes.
The CLI builds the plan from its options and runs the job here, or spreads it over a Ray cluster
(jobs.ray), whose workers run this same code.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Protocol

import numpy as np
from tqdm import tqdm

from ..devices import resolve_device
from ..errors import DensePoseError
from ..io.atomic import atomic_write, remove_temporaries
from ..io.coco_results import result_to_records, write_results
from ..io.images import ImageTooLargeError, read_image, write_picture
from ..io.inputs import InputItem
from ..io.iuv_png import write_inds_png, write_iuv_png
from ..io.npz import read_npz, write_npz
from ..io.video import DEFAULT_FPS, VideoEncoder, VideoInfo, probe_video, read_frames, video_writer
from ..render import Render, idm_vton_input, idm_vton_output
from ..results import DensePoseResult
from ..surface import ChartLocator, SmplSurface, require_smpl_charts_of
from ..video import TemporalSmoother, Tracker
from ..video.clip import ClipSpec, boxes_by_track, crop_square, main_track_boxes, plan_crop, resample_indices

ARRAY_OUTPUTS = ("npz", "iuv", "json")
LAYOUTS = ("folders", "beside", "viton")
CLIP_RGB = "rgb"  # the output name of a clip's cropped source video, beside its renders
CLIP_TEMPORARY_PREFIX = ".densepose-clip-"  # a clip's per-frame results wait in such a folder of the output folder


def remove_leftovers(output_dir: Path) -> int:
    """Delete what killed runs left in `output_dir`: temporary files of unfinished writes and
    the temporary folders of unfinished clips (an output folder is written by one run at a time)."""
    removed = remove_temporaries(output_dir)
    for folder in output_dir.glob(f"{CLIP_TEMPORARY_PREFIX}*"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


@dataclass(frozen=True)
class ModelChoice:
    """The model to run: a name, and for files the architecture and whether to trust them."""

    name: str | None  # zoo name, checkpoint path, "default" or None (the embedded model)
    config: str | None = None  # zoo architecture of a checkpoint whose keys do not settle it
    trust_checkpoint: bool = False
    backend: str | None = None  # torch, onnxruntime or openvino (None: torch, or the exported file's runtime)
    flip: bool | None = None  # the test-time flip (Predictor(flip=...); None: the model's own test_flip)
    uv_symmetry: str | None = None  # UV_symmetry_transforms.mat, which the flip needs for SMPL charts


class Progress(Protocol):
    """Where a job reports: tqdm's bar on one machine, a tally on a Ray worker."""

    def update(self, n: int = 1) -> object: ...

    def write(self, message: str, file=None) -> None: ...


@dataclass(frozen=True)
class Plan:
    """What to write for each input, and where."""

    output_dir: Path
    outputs: tuple[str, ...]
    renders: dict[str, Render]
    layout: str
    overwrite: bool
    idm_vton: bool
    video_encoder: VideoEncoder | None
    max_pixels: int
    temporal: str  # "off" or a video.smoothing mode
    clip: ClipSpec | None = None  # videos rendered as animation-ready clips
    folder_fps: float = DEFAULT_FPS  # frame rate of a folder of frames
    surface: SmplSurface | None = None  # SMPL vertex maps go into npz files (for results of SMPL charts)

    def locator_for(self, result: DensePoseResult) -> ChartLocator | None:
        """What write_npz needs to add `vertex` to the file of `result` (None: no vertex map)."""
        return self.surface.locator if self.surface is not None and result.chart_body == "smpl" else None

    def video_render_paths(self, stem: PurePosixPath) -> dict[str, Path]:
        """Each video render's path (and, for a clip, the cropped source video's, as CLIP_RGB)."""
        names = [*self.renders, CLIP_RGB] if self.clip and self.renders else list(self.renders)
        return {name: self.render_path(stem, name, self.video_encoder.extension) for name in names}

    def array_paths(self, stem: PurePosixPath, output: str) -> list[Path]:
        base = self.output_dir if self.layout == "beside" else self.output_dir / output
        if output == "iuv":
            return [base / f"{stem}_IUV.png", base / f"{stem}_INDS.png"]
        return [base / f"{stem}.{output}"]

    def render_path(self, stem: PurePosixPath, preset: str, extension: str) -> Path:
        if self.layout == "viton":
            return self.output_dir / f"{stem}{extension}"
        if self.layout == "beside":
            return self.output_dir / f"{stem}_{preset}{extension}"
        return self.output_dir / preset / f"{stem}{extension}"

    def video_manifest_path(self, stem: PurePosixPath) -> Path | None:
        """STEM/video.json beside a video's per-frame arrays (written last: the video is done);
        None when no arrays are written."""
        if not self.outputs:
            return None
        return self.array_paths(stem / "video", self.outputs[0])[0].with_name("video.json")

    def image_render_extension(self) -> str:
        return ".jpg" if self.layout == "viton" else ".png"

    def needs_writing(self, paths: list[Path]) -> bool:
        return self.overwrite or not all(path.exists() for path in paths)


class LazyPredictor:
    """Loads the model on first use, so that a run with nothing left to do loads nothing. A model
    whose charts are on another body than `chart_bodies` require ({body: what needs it}) is refused
    as it loads."""

    def __init__(self, model: ModelChoice, device: str | None, precision: str, min_score: float | None, top_person: bool,
                 chart_bodies: dict[str, str] | None = None):
        self._arguments = (model, device, precision, min_score, top_person)
        self._chart_bodies = chart_bodies or {}
        self._predictor = None

    def batch(self, images: list[np.ndarray]) -> list[DensePoseResult]:
        return self._loaded().batch(images)

    @property
    def chart_body(self) -> str:
        """Whose charts the model's results are on (what an empty result of it says too)."""
        return self._loaded().config.chart_body

    def _loaded(self):
        if self._predictor is None:
            predictor = build_predictor(*self._arguments)
            if self._chart_bodies:
                check_chart_body(predictor.config.chart_body, self._chart_bodies)
            self._predictor = predictor
        return self._predictor


def check_chart_body(chart_body: str, required: dict[str, str]) -> None:
    """A one-line DensePoseError when a model's charts are not on the body each need requires."""
    for body, what in required.items():
        if body == "smpl":
            require_smpl_charts_of(chart_body, what)
        elif chart_body != body:
            raise DensePoseError(f"{what} is on the {body} body's charts, but this model's are on the {chart_body} body's: "
                                 "unwrap the atlas with the model you paint with")


def build_predictor(
    model: ModelChoice, device: str | None, precision: str, min_score: float | None = None, top_person: bool = False,
):
    """A Predictor for the CLI: the chosen (or embedded default) model on the chosen device and
    backend, keeping the detections above `min_score` (default: the model's own 0.05)."""
    from ..checkpoint import load_model
    from ..export.runtime import RUNTIME_SUFFIXES
    from ..inference import Predictor

    exported = Path(model.name or "").suffix.lower() in RUNTIME_SUFFIXES
    if exported or model.backend not in (None, "torch"):
        # An exported graph (or a model to export on the fly) runs on the CPU runtime.
        network = model.name if exported else load_model(model.name, config=model.config, trust_checkpoint=model.trust_checkpoint)
        return Predictor(network, device=device, precision=precision, min_score=min_score, top_person=top_person, backend=model.backend,
                         flip=model.flip, uv_symmetry=model.uv_symmetry)
    chosen = resolve_device(device)
    loaded = load_model(model.name, config=model.config, device=chosen, trust_checkpoint=model.trust_checkpoint)
    return Predictor(loaded, device=chosen, precision=precision, min_score=min_score, top_person=top_person, flip=model.flip,
                     uv_symmetry=model.uv_symmetry)


def image_id_of(stem: str) -> int:
    """COCO image id of a file: the number ending its name (COCO_val2014_000000000785 -> 785), else 0."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else 0


def _render(plan: Plan, preset: str, image: np.ndarray, result: DensePoseResult) -> np.ndarray:
    picture = plan.renders[preset](image, result)
    return idm_vton_output(picture) if plan.idm_vton else picture


def _write_arrays(plan: Plan, stem: PurePosixPath, result: DensePoseResult, image_id: int, file_name: str, always: bool = False) -> None:
    for output in plan.outputs:
        paths = plan.array_paths(stem, output)
        if not always and not plan.needs_writing(paths):
            continue
        if output == "npz":
            write_npz(paths[0], result, plan.locator_for(result))
        elif output == "iuv":
            maps = result.to_dense()
            write_iuv_png(paths[0], maps)
            write_inds_png(paths[1], maps)
        else:
            write_results(paths[0], result_to_records(result, image_id, file_name=file_name))


def image_pending(plan: Plan, item: InputItem) -> bool:
    extension = plan.image_render_extension()
    return any(plan.needs_writing(plan.array_paths(item.output_stem, output)) for output in plan.outputs) or any(
        plan.needs_writing([plan.render_path(item.output_stem, preset, extension)]) for preset in plan.renders)


def video_pending(plan: Plan, item: InputItem) -> bool:
    """Whether a video's renders or its video.json (written last) are missing (or --overwrite)."""
    manifest = plan.video_manifest_path(item.output_stem)
    return plan.needs_writing([*plan.video_render_paths(item.output_stem).values(), *([manifest] if manifest else [])])


class Job:
    """One `densepose predict` run (or a Ray worker's share of one): counts, messages and the
    progress it reports to; `frame_bars` shows a bar per video's frames below it."""

    def __init__(self, plan: Plan, predictor: LazyPredictor, batch_size: int, progress: Progress, frame_bars: bool = True):
        self.plan, self.predictor, self.batch_size, self.progress = plan, predictor, batch_size, progress
        self.frame_bars = frame_bars
        self.failed: list[str] = []
        self.damaged: list[str] = []  # videos written with frames that could not be read
        self.skipped = 0
        self.people = 0  # people found in the images (and person-frames in the videos) predicted by this job

    def run(self, items: list[InputItem]) -> None:
        """Every input, in order: runs of images in batches, each video on its own."""
        for is_video, group in runs_of_kind(items):
            if is_video:
                for item in group:
                    self.video(item)
            else:
                self.images(group)

    def report_failure(self, item: InputItem, error: Exception | str) -> None:
        self.failed.append(str(item.path))
        self.progress.write(f"densepose: skipped {item.path}: {error}", file=sys.stderr)

    def images(self, items: list[InputItem]) -> None:
        """Images in batches of `batch_size`: read, predict, write."""
        pending = []
        for item in items:
            if image_pending(self.plan, item):
                pending.append(item)
            else:
                self.skipped += 1
                self.progress.update(1)
        for start in range(0, len(pending), self.batch_size):
            self._image_batch(pending[start : start + self.batch_size])

    def _image_batch(self, items: list[InputItem]) -> None:
        loaded: list[tuple[InputItem, np.ndarray]] = []
        for item in items:
            try:
                image = read_image(item.path, self.plan.max_pixels)
                loaded.append((item, idm_vton_input(image) if self.plan.idm_vton else image))
            except ImageTooLargeError as error:
                self.report_failure(item, f"{error} (--max-pixels raises the limit)")
                self.progress.update(1)
            except DensePoseError as error:
                self.report_failure(item, error)
                self.progress.update(1)
        if not loaded:
            return
        results = self.predictor.batch([image for _, image in loaded])
        for (item, image), result in zip(loaded, results):
            try:
                self._write_image_outputs(item, image, result)
            except (DensePoseError, OSError) as error:
                self.report_failure(item, error)
            self.progress.update(1)

    def _write_image_outputs(self, item: InputItem, image: np.ndarray, result: DensePoseResult) -> None:
        self.people += len(result)
        stem = item.output_stem
        _write_arrays(self.plan, stem, result, image_id_of(stem.name), str(item.relative))
        extension = self.plan.image_render_extension()
        for preset in self.plan.renders:
            path = self.plan.render_path(stem, preset, extension)
            if self.plan.needs_writing([path]):
                write_picture(path, _render(self.plan, preset, image, result))

    def video(self, item: InputItem) -> None:
        try:
            self._video(item)
        except (DensePoseError, OSError) as error:
            self.report_failure(item, error)
        self.progress.update(1)

    def _video(self, item: InputItem) -> None:
        """All frames of a video, in order, with people tracked across them: a video is done as a
        whole (its track ids depend on every earlier frame), so an unfinished one is redone. A
        clip is written in a second pass over the video, once the crop is planned from every frame."""
        plan = self.plan
        stem = item.output_stem
        render_paths = plan.video_render_paths(stem)
        manifest = plan.video_manifest_path(stem)
        if not video_pending(plan, item):
            self.skipped += 1
            return
        info = probe_video(item.path, plan.folder_fps)
        problems: list[str] = []

        def report(message: str) -> None:
            problems.append(message)
            self.progress.write(f"densepose: {item.path}: {message}", file=sys.stderr)

        tracker = Tracker()
        smoother = TemporalSmoother(plan.temporal) if plan.temporal != "off" else None
        written = 0
        clip_boxes: list[dict[int, np.ndarray]] = []  # for a clip: each frame's boxes by track
        with contextlib.ExitStack() as stack:
            clip_folder = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=plan.output_dir, prefix=CLIP_TEMPORARY_PREFIX))) \
                if plan.clip and render_paths else None
            writers = {} if clip_folder else {
                preset: stack.enter_context(video_writer(path, info.fps, plan.video_encoder)) for preset, path in render_paths.items()}
            frame_bar = stack.enter_context(tqdm(total=info.frame_count or None, desc=item.path.name, unit="frame", leave=False, position=1,
                                                 disable=not self.frame_bars))

            def write(ready: list[tuple[np.ndarray, DensePoseResult]]) -> None:
                nonlocal written
                for frame, result in ready:
                    self.people += len(result)
                    _write_arrays(plan, stem / f"{written:06d}", result, written, str(item.relative), always=True)
                    for preset, write_frame in writers.items():
                        write_frame(_render(plan, preset, frame, result))
                    if clip_folder:
                        write_npz(clip_folder / f"{written:06d}.npz", result)
                        clip_boxes.append(boxes_by_track(result))
                    written += 1
                    frame_bar.update(1)

            batch: list[np.ndarray | None] = []
            for frame in read_frames(item.path, report, plan.max_pixels):
                batch.append(idm_vton_input(frame) if plan.idm_vton and frame is not None else frame)
                if len(batch) == self.batch_size:
                    write(self._track(batch, info, tracker, smoother))
                    batch = []
            write(self._track(batch, info, tracker, smoother) + (smoother.flush() if smoother else []))
            clip = self._clip(item, info, clip_folder, clip_boxes, render_paths) if clip_folder else None
        if problems:
            self.damaged.append(str(item.path))
        if manifest is not None:
            record = {"source": str(item.relative), "frames": written, "fps": info.fps, "temporal": plan.temporal}
            with atomic_write(manifest, "w") as handle:
                json.dump({**record, **({"problems": problems} if problems else {}), **({"clip": clip} if clip else {})}, handle)

    def _track(self, frames: list[np.ndarray | None], info: VideoInfo, tracker: Tracker,
               smoother: TemporalSmoother | None) -> list[tuple[np.ndarray, DensePoseResult]]:
        """The frames' results with people tracked (and smoothed: those that are ready), in order.
        A frame that could not be decoded (None) is a black picture with nobody in it."""
        decoded = [frame for frame in frames if frame is not None]
        predicted = iter(self.predictor.batch(decoded) if decoded else [])
        tracked = []
        for frame in frames:
            if frame is None:
                frame = np.zeros((info.height, info.width, 3), np.uint8)
                result = DensePoseResult(image_size=(info.height, info.width), boxes=np.zeros((0, 4), np.float32),
                                         scores=np.zeros(0, np.float32), chart_body=self.predictor.chart_body)
            else:
                result = next(predicted)
            tracked.append((frame, tracker.update(frame, result)))
        if smoother is None:
            return tracked
        return [pair for frame, result in tracked for pair in smoother.push(frame, result)]

    def _clip(self, item: InputItem, info: VideoInfo, folder: Path, boxes: list[dict[int, np.ndarray]],
              paths: dict[str, Path]) -> dict[str, object]:
        """Second pass of a clip: the source frames again, with their results from `folder`, cropped
        along the planned path, resized and resampled; returns what video.json says of the clip."""
        plan, spec = self.plan, self.plan.clip
        crop = plan_crop(main_track_boxes(boxes), (info.height, info.width), info.fps, spec)
        sources = resample_indices(len(boxes), info.fps, spec.fps)
        black = np.zeros((info.height, info.width, 3), np.uint8)
        with contextlib.ExitStack() as stack:
            writers = {name: stack.enter_context(video_writer(path, spec.fps, plan.video_encoder)) for name, path in paths.items()}
            bar = stack.enter_context(tqdm(total=len(sources), desc=f"{item.path.name} (clip)", unit="frame", leave=False, position=1,
                                           disable=not self.frame_bars))
            frames = read_frames(item.path, max_pixels=plan.max_pixels)
            index, frame = -1, black
            for source in sources:
                while index < source:
                    frame, index = next(frames, None), index + 1
                picture = black if frame is None else frame
                result = read_npz(folder / f"{source:06d}.npz")
                for preset in plan.renders:
                    writers[preset](crop_square(_render(plan, preset, picture, result), crop[source], spec.size))
                writers[CLIP_RGB](crop_square(picture, crop[source], spec.size))
                bar.update(1)
        return {**asdict(spec), "frames": len(sources), "source_frames": sources.tolist(), "crop_xy_side": crop[sources].tolist()}



def runs_of_kind(items: list[InputItem]) -> Iterator[tuple[bool, list[InputItem]]]:
    """Consecutive images, and each video, in input order."""
    group: list[InputItem] = []
    for item in items:
        if item.kind == "video":
            if group:
                yield False, group
                group = []
            yield True, [item]
        else:
            group.append(item)
    if group:
        yield False, group

