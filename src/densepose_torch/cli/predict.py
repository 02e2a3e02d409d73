"""`densepose predict`: DensePose on images, folders, glob patterns and videos, written as
arrays (npz, Caffe2 IUV PNGs, COCO JSON) and pictures (render presets)."""
from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ..checkpoint import DEFAULT_MODEL_NAME
from ..devices import resolve_device
from ..errors import DensePoseError
from ..io.images import DEFAULT_MAX_PIXELS
from ..io.inputs import expand_inputs
from ..io.output_folder import check_run_record, prepare_output_folder
from ..io.video import DEFAULT_FPS, choose_encoder
from ..jobs.predict import ARRAY_OUTPUTS, CLIP_RGB, LAYOUTS, Job, LazyPredictor, Plan, remove_leftovers
from ..jobs.ray import import_ray, predict_on_ray
from ..render import ANIMATION_PRESETS, PRESETS, dp_iuv_texture, load_texture_atlas
from ..render.surface import smpl_vertices
from ..surface import SmplSurface, find_uv_processed
from ..surface.atlas import atlas_chart_body
from ..surface.smpl import INSTALL_HINT
from ..video import TEMPORAL_MODES
from ..video.clip import CLIP_PRESETS, ClipSpec
from .arguments import (
    add_backend_argument,
    add_flip_arguments,
    add_model_file_arguments,
    add_precision_argument,
    add_ray_arguments,
    check_min_score,
    model_choice,
    positive,
    ray_options,
)

EXAMPLES = """\
examples:
  densepose predict photo.jpg -o out --render segm
  densepose predict dataset/image -o dataset/image-densepose --render viton --layout viton
  densepose predict 'clips/*.mp4' -o out --render magicanimate --outputs npz
  densepose predict dance.mp4 -o out --clip magicanimate     (out/magicanimate/dance.mp4 + out/rgb/dance.mp4)
  densepose predict frames/ --folders-as-videos --fps 30 -o out --render segm
  densepose predict shoots/ --recursive -o out --outputs npz,iuv,json --batch-size 4
  densepose predict /nfs/photos -o /nfs/out --render viton --ray auto --ray-gpus 1 --batch-size 8

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
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="zoo model name, checkpoint file, exported .onnx / .xml file, or default (the embedded model, the default)")
    add_model_file_arguments(parser)
    add_flip_arguments(parser)
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
    add_ray_arguments(parser)
    parser.add_argument("--max-pixels", type=positive(int), default=DEFAULT_MAX_PIXELS,
                        help=f"largest image, width x height (default {DEFAULT_MAX_PIXELS}); larger ones are reported and "
                             "skipped before decoding")
    parser.set_defaults(handler=run)


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
            "surface_maps": True if vertex_maps else None,  # None: as folders written before vertex maps existed
            "flip": _flip_setting(args)}


def _flip_setting(args: argparse.Namespace) -> str | None:
    """What --flip / --no-flip asked for (None: the model's own setting, as in folders written
    before the option existed)."""
    if args.flip is None:
        return None
    if not args.flip:
        return "off"
    return f"on, mirror tables {Path(args.uv_symmetry).resolve()}" if args.uv_symmetry else "on"


def run(args: argparse.Namespace) -> int:
    if args.clip and not args.render:
        args.render = [args.clip]  # a clip preset is named after the render it is made for
    outputs = list(args.outputs) or ([] if args.render else ["npz"])
    _check_combination(args, outputs)
    if args.ray is not None:
        import_ray()  # without the extra: a one-line error before any work
    else:
        resolve_device(args.device)  # a bad --device is a one-line error before any work (Ray workers choose their own)
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
    predictor = LazyPredictor(model_choice(args), args.device, args.precision, args.min_score, args.top_person, chart_bodies)
    remove_leftovers(output_dir)  # of runs that were killed mid-write
    with tqdm(total=len(items), unit="file", desc="densepose", position=0) as progress:
        if args.ray is not None:
            ray_run = predict_on_ray(plan, predictor, items, args.batch_size, ray_options(args), progress)
            failed, damaged, skipped = ray_run.failed, ray_run.damaged, ray_run.skipped
        else:
            session = Job(plan, predictor, args.batch_size, progress)
            session.run(items)
            failed, damaged, skipped = session.failed, session.damaged, session.skipped
    summary = f"densepose: {len(items) - len(failed)} of {len(items)} inputs done ({skipped} already were) in {output_dir}"
    if damaged:
        summary += f"; {len(damaged)} with frames that could not be read (written as empty frames)"
    if failed:
        summary += f"; {len(failed)} failed"
    if args.ray is not None and ray_run.seconds:
        computed = len(items) - skipped
        summary += (f"; on Ray: {ray_run.people} people in {computed} inputs, {ray_run.seconds:.1f} s, "
                    f"{computed / ray_run.seconds:.2f} inputs/s")
    print(summary, file=sys.stderr)
    return 1 if failed or damaged else 0


