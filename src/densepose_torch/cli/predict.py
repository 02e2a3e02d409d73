"""`densepose predict`: DensePose on images, folders, glob patterns and videos, written as
arrays (npz, Caffe2 IUV PNGs, COCO JSON) and pictures (render presets)."""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from ..errors import DensePoseError
from ..io.atomic import atomic_write
from ..io.coco_results import result_to_records, write_results
from ..checkpoint import DEFAULT_MODEL_NAME
from ..devices import resolve_device
from ..io.images import DEFAULT_MAX_PIXELS, ImageTooLargeError, read_image, write_picture
from ..io.inputs import InputItem, expand_inputs
from ..io.iuv_png import write_inds_png, write_iuv_png
from ..io.npz import read_npz, write_npz
from ..io.output_folder import check_run_record, prepare_output_folder
from ..io.video import (
    DEFAULT_FPS,
    VideoEncoder,
    VideoInfo,
    choose_encoder,
    probe_video,
    read_frames,
    video_writer,
)
from ..render import (
    ANIMATION_PRESETS,
    PRESETS,
    Render,
    dp_iuv_texture,
    idm_vton_input,
    idm_vton_output,
    load_texture_atlas,
)
from ..render.surface import smpl_vertices
from ..results import DensePoseResult
from ..surface import ChartLocator, SmplSurface, find_uv_processed, require_smpl_charts_of
from ..surface.atlas import atlas_chart_body
from ..surface.smpl import INSTALL_HINT
from ..video import TEMPORAL_MODES, TemporalSmoother, Tracker
from ..video.clip import CLIP_PRESETS, ClipSpec, boxes_by_track, crop_square, main_track_boxes, plan_crop, resample_indices
from .arguments import ModelChoice, add_backend_argument, add_model_file_arguments, add_precision_argument, check_min_score, positive

ARRAY_OUTPUTS = ("npz", "iuv", "json")
LAYOUTS = ("folders", "beside", "viton")
CLIP_RGB = "rgb"  # the output name of a clip's cropped source video, beside its renders

EXAMPLES = """\
examples:
  densepose predict photo.jpg -o out --render segm
  densepose predict dataset/image -o dataset/image-densepose --render viton --layout viton
  densepose predict 'clips/*.mp4' -o out --render magicanimate --outputs npz
  densepose predict dance.mp4 -o out --clip magicanimate     (out/magicanimate/dance.mp4 + out/rgb/dance.mp4)
  densepose predict frames/ --folders-as-videos --fps 30 -o out --render segm
  densepose predict shoots/ --recursive -o out --outputs npz,iuv,json --batch-size 4

layouts (STEM = the input's path below its folder, without extension):
  folders  OUTDIR/npz/STEM.npz, OUTDIR/iuv/STEM_IUV.png + STEM_INDS.png, OUTDIR/json/STEM.json,
           OUTDIR/PRESET/STEM.png (videos: OUTDIR/PRESET/STEM.mp4)
  beside   OUTDIR/STEM.npz, STEM_IUV.png, STEM_INDS.png, STEM.json, STEM_PRESET.png
  viton    one render, OUTDIR/STEM.jpg, as VITON-HD / HR-VITON `image-densepose` folders hold
  Video frames' arrays go to STEM/000000.npz, STEM/000001.npz, ... in place of STEM.npz, one per
  frame (a frame with nobody in it too), then STEM/video.json (frames, fps) once the video is done.
  People are tracked through a video: `instance` in npz and INDS PNGs, and `track_id` in JSON, is
  the person's track id, the same in every frame. A frame that cannot be decoded is reported and
  written as an empty frame, so frame count and order stay the input's.
  --clip: each video render and the cropped source video (PRESET/STEM.mp4 and rgb/STEM.mp4) are
  the square that follows the main person, at the clip's size and frame rate; arrays stay per
  source frame, and STEM/video.json lists each clip frame's source frame and crop window.
"""


def _names(choices: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)} (choose from {', '.join(choices)})")
        return list(dict.fromkeys(names))

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="run DensePose on images, folders, glob patterns and videos",
        description="Run DensePose on images, folders, glob patterns and videos; write arrays and pictures.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders (sorted), glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--model", metavar="NAME|PATH", help="zoo model name, checkpoint file, exported .onnx / .xml file, or default (the embedded model, the default)")
    add_model_file_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    add_precision_argument(parser)
    parser.add_argument("--min-score", type=float, default=0.8,
                        help="keep detections scoring above this (default 0.8, as apply_net); the DensePose head runs only on those")
    parser.add_argument("--outputs", type=_names(ARRAY_OUTPUTS, "output"), default=[], metavar="LIST",
                        help="comma list of npz, iuv, json (default: npz when no --render is given)")
    parser.add_argument("--render", type=_names(tuple(PRESETS), "preset"), default=[], metavar="LIST",
                        help="comma list of render presets: " + ", ".join(PRESETS))
    parser.add_argument("--temporal", choices=("off", *TEMPORAL_MODES),
                        help="smooth videos in time: centred (files; 4 frames of latency) or causal (streams; none), or off "
                             "(default: centred for videos rendered with " + ", ".join(ANIMATION_PRESETS) + ", else off, which "
                             "keeps each frame as the model predicted it)")
    parser.add_argument("--clip", choices=tuple(CLIP_PRESETS),
                        help="animation-ready video renders: a square crop that follows the main person smoothly, "
                             "resized and resampled (magicanimate: 512x512 at 25 fps), plus the matching cropped source "
                             "video; renders magicanimate when no --render is given")
    parser.add_argument("--clip-size", type=positive(int), metavar="PIXELS", help="side of the --clip videos (default: the preset's)")
    parser.add_argument("--clip-fps", type=positive(float), metavar="FPS", help="frame rate of the --clip videos (default: the preset's)")
    parser.add_argument("--folders-as-videos", action="store_true",
                        help="read each folder of images as the frames of one video (natural name order: frame_2 before "
                             "frame_10); with --recursive, each sub-folder holding images too")
    parser.add_argument("--fps", type=positive(float), default=DEFAULT_FPS,
                        help=f"frame rate of videos made of folders of frames (default {DEFAULT_FPS:g})")
    parser.add_argument("--batch-size", type=positive(int), default=1, help="images (or frames) per model call (default 1)")
    parser.add_argument("--recursive", action="store_true", help="include sub-folders, keeping them in the output tree")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    parser.add_argument("--layout", choices=LAYOUTS, default="folders", help="how output files are named (see below)")
    parser.add_argument("--top-person", action="store_true", help="keep only the highest-scoring person of each image")
    parser.add_argument("--idm-vton", action="store_true",
                        help="IDM-VTON sizes: predict on the photo resized to 768x1024 then 384x512, renders resized to "
                             "768x1024 (arrays describe the 384x512 image)")
    parser.add_argument("--surface-maps", action="store_true",
                        help="add `vertex` (each pixel's SMPL vertex, -1 off the body) to npz files; needs a model of SMPL "
                             "charts (zoo models) and the [surface] extra or --smpl-charts (default: added when both are there)")
    parser.add_argument("--smpl-charts", metavar="PATH", help="DensePose's UV_Processed.mat, for --surface-maps and the smpl "
                                                              "render (default: the one of the [surface] extra)")
    parser.add_argument("--texture-atlas", metavar="PATH", help="texture atlas for the texture preset (4x6 tiles; default: generated)")
    parser.add_argument("--max-pixels", type=positive(int), default=DEFAULT_MAX_PIXELS,
                        help=f"largest image, width x height (default {DEFAULT_MAX_PIXELS}); larger ones are reported and "
                             "skipped before decoding")
    parser.set_defaults(handler=run)


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
        if self._predictor is None:
            predictor = build_predictor(*self._arguments)
            if self._chart_bodies:
                check_chart_body(predictor.config.chart_body, self._chart_bodies)
            self._predictor = predictor
        return self._predictor.batch(images)


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
        return Predictor(network, device=device, precision=precision, min_score=min_score, top_person=top_person, backend=model.backend)
    chosen = resolve_device(device)
    loaded = load_model(model.name, config=model.config, device=chosen, trust_checkpoint=model.trust_checkpoint)
    return Predictor(loaded, device=chosen, precision=precision, min_score=min_score, top_person=top_person)


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


def _image_pending(plan: Plan, item: InputItem) -> bool:
    extension = plan.image_render_extension()
    return any(plan.needs_writing(plan.array_paths(item.output_stem, output)) for output in plan.outputs) or any(
        plan.needs_writing([plan.render_path(item.output_stem, preset, extension)]) for preset in plan.renders)


class Job:
    """One `densepose predict` run: counts, messages and the shared progress bar."""

    def __init__(self, plan: Plan, predictor: LazyPredictor, batch_size: int, progress: tqdm):
        self.plan, self.predictor, self.batch_size, self.progress = plan, predictor, batch_size, progress
        self.failed: list[str] = []
        self.damaged: list[str] = []  # videos written with frames that could not be read
        self.skipped = 0

    def report_failure(self, item: InputItem, error: Exception | str) -> None:
        self.failed.append(str(item.path))
        self.progress.write(f"densepose: skipped {item.path}: {error}", file=sys.stderr)

    def images(self, items: list[InputItem]) -> None:
        """Images in batches of `batch_size`: read, predict, write."""
        pending = []
        for item in items:
            if _image_pending(self.plan, item):
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
        if not plan.needs_writing([*render_paths.values(), *([manifest] if manifest else [])]):
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
            clip_folder = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=plan.output_dir, prefix=".densepose-clip-"))) \
                if plan.clip and render_paths else None
            writers = {} if clip_folder else {
                preset: stack.enter_context(video_writer(path, info.fps, plan.video_encoder)) for preset, path in render_paths.items()}
            frame_bar = stack.enter_context(tqdm(total=info.frame_count or None, desc=item.path.name, unit="frame", leave=False, position=1))

            def write(ready: list[tuple[np.ndarray, DensePoseResult]]) -> None:
                nonlocal written
                for frame, result in ready:
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
                result = DensePoseResult(image_size=(info.height, info.width), boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32))
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
            bar = stack.enter_context(tqdm(total=len(sources), desc=f"{item.path.name} (clip)", unit="frame", leave=False, position=1))
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


def _check_combination(args: argparse.Namespace, outputs: list[str]) -> None:
    if args.layout == "viton" and (len(args.render) != 1 or outputs):
        raise DensePoseError("--layout viton writes exactly one render per input as OUTDIR/STEM.jpg: "
                             "give one --render preset and no --outputs (run again for other outputs)")
    if args.texture_atlas and "texture" not in args.render:
        raise DensePoseError("--texture-atlas is for --render texture")
    check_min_score(args.min_score)
    if (args.clip_size or args.clip_fps) and not args.clip:
        raise DensePoseError("--clip-size and --clip-fps set the size and rate of --clip videos: give --clip too")
    if args.clip and (args.layout == "viton" or args.idm_vton):
        raise DensePoseError("--clip makes square videos at its own size; it does not combine with --layout viton or --idm-vton")


def _smpl_surface(args: argparse.Namespace) -> SmplSurface | None:
    """DensePose's SMPL charts when the run needs them (--surface-maps, the smpl render) or has them
    (--smpl-charts, the [surface] extra installed: npz files then get vertex maps); a one-line error
    when asked for and absent."""
    installed = find_uv_processed() is not None
    asked = args.surface_maps or "smpl" in args.render
    if not (asked or args.smpl_charts or installed):
        return None
    if args.smpl_charts is None and not installed:
        raise DensePoseError(INSTALL_HINT)
    return SmplSurface(args.smpl_charts)


def _clip_spec(args: argparse.Namespace) -> ClipSpec | None:
    """The --clip preset with --clip-size and --clip-fps applied; None without --clip."""
    if not args.clip:
        return None
    preset = CLIP_PRESETS[args.clip]
    return replace(preset, size=args.clip_size or preset.size, fps=args.clip_fps or preset.fps)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _temporal(args: argparse.Namespace) -> str:
    """--temporal, or its default: centred when a video render is for animation, else off."""
    if args.temporal is not None:
        return args.temporal
    return "centred" if any(preset in ANIMATION_PRESETS for preset in args.render) else "off"


def _content_settings(args: argparse.Namespace, vertex_maps: bool) -> dict[str, object]:
    """The options that decide what an output file contains (not which files are written);
    `vertex_maps`: whether npz files get SMPL vertex maps."""
    atlas = Path(args.texture_atlas).resolve() if args.texture_atlas else None
    clip = _clip_spec(args)
    return {"model": args.model or DEFAULT_MODEL_NAME, "config": args.config, "precision": args.precision, "min_score": args.min_score,
            "top_person": args.top_person, "idm_vton": args.idm_vton, "temporal": _temporal(args),
            "texture_atlas": f"{atlas} ({atlas.stat().st_size} bytes)" if atlas and atlas.is_file() else None,
            "clip": asdict(clip) if clip else None, "folder_fps": args.fps if args.folders_as_videos else None,
            "surface_maps": True if vertex_maps else None}  # None: as folders written before vertex maps existed


def run(args: argparse.Namespace) -> int:
    if args.clip and not args.render:
        args.render = [args.clip]  # a clip preset is named after the render it is made for
    outputs = list(args.outputs) or ([] if args.render else ["npz"])
    _check_combination(args, outputs)
    resolve_device(args.device)  # a bad --device is a one-line error before any work
    output_dir = Path(args.output)  # checked, created and tried by prepare_output_folder below
    # Outputs written into an input folder must not become inputs of the next run.
    items = [item for item in expand_inputs(args.inputs, args.recursive, args.folders_as_videos) if not _inside(item.path, output_dir)]
    if not items:
        raise DensePoseError(f"every input lies inside the output folder {output_dir}")
    renders = {preset: PRESETS[preset] for preset in args.render}
    if args.texture_atlas:
        renders["texture"] = functools.partial(dp_iuv_texture, atlas=load_texture_atlas(args.texture_atlas))
    surface = _smpl_surface(args)
    if "smpl" in renders:
        renders["smpl"] = functools.partial(smpl_vertices, surface=surface)
    videos = [item for item in items if item.kind == "video"]
    encoder = None
    if videos and renders:
        encoder = choose_encoder()
        if not encoder.h264:
            playable = "plays in current browsers" if encoder.browser_playable else "most browsers will not play it"
            print(f"densepose: no H.264 encoder here (pip install imageio-ffmpeg adds one); videos are written with "
                  f"{encoder.name} as {encoder.extension} ({playable})", file=sys.stderr)
    clip = _clip_spec(args)
    plan = Plan(output_dir, tuple(outputs), renders, args.layout, args.overwrite, args.idm_vton, encoder, args.max_pixels, _temporal(args),
                clip, args.fps, surface if "npz" in outputs else None)
    prepare_output_folder(output_dir, [*outputs, *renders, *([CLIP_RGB] if clip else [])] if args.layout == "folders" else [])
    check_run_record(output_dir, _content_settings(args, surface is not None), args.overwrite)
    chart_bodies = {}
    if args.surface_maps or "smpl" in renders:
        chart_bodies["smpl"] = "--surface-maps" if args.surface_maps else "the smpl render"
    atlas_body = atlas_chart_body(args.texture_atlas) if args.texture_atlas else None
    if atlas_body and atlas_body not in chart_bodies:
        chart_bodies[atlas_body] = f"the texture atlas {args.texture_atlas}"
    predictor = LazyPredictor(ModelChoice.from_args(args), args.device, args.precision, args.min_score, args.top_person, chart_bodies)
    with tqdm(total=len(items), unit="file", desc="densepose", position=0) as progress:
        session = Job(plan, predictor, args.batch_size, progress)
        for is_video, group in _runs_of_kind(items):
            if is_video:
                for item in group:
                    session.video(item)
            else:
                session.images(group)
    done = len(items) - len(session.failed)
    summary = f"densepose: {done} of {len(items)} inputs done ({session.skipped} already were) in {output_dir}"
    if session.damaged:
        summary += f"; {len(session.damaged)} with frames that could not be read (written as empty frames)"
    if session.failed:
        summary += f"; {len(session.failed)} failed"
    print(summary, file=sys.stderr)
    return 1 if session.failed or session.damaged else 0


def _runs_of_kind(items: list[InputItem]) -> Iterator[tuple[bool, list[InputItem]]]:
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
