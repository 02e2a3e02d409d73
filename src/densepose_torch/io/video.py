"""Reading video frames and writing rendered videos that browsers play.

Frames are read with OpenCV (FFmpeg inside opencv-python-headless reads mp4, mov, avi, mkv, webm
and gif), or from a folder of images read as the frames of one video. Writing picks the first
encoder available, once per run:
1. H.264 in .mp4 through the ffmpeg binary of the optional `imageio-ffmpeg` package (libx264,
   yuv420p, +faststart: plays in every browser);
2. H.264 in .mp4 through OpenCV, for OpenCV builds that have an H.264 encoder (the PyPI wheels
   do not);
3. VP9 in .webm through OpenCV (plays in current browsers, but is not H.264);
4. MPEG-4 part 2 in .mp4 through OpenCV (most browsers do not play it).
Frames with an odd width or height get one black column or row, as 4:2:0 video needs even sizes.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..errors import DensePoseError
from .atomic import atomic_path
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, read_image

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
DEFAULT_FPS = 25.0
# Failed reads in a row after which the rest of a file counts as lost (10 s at 25 fps; a read at the
# end of a file takes about 40 microseconds).
MAX_UNDECODABLE_RUN = 250


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # DEFAULT_FPS when the file does not say
    frame_count: int  # as the container reports it (an estimate for some formats)
    width: int
    height: int


@dataclass(frozen=True)
class VideoEncoder:
    name: str  # "libx264", "opencv-avc1", "opencv-vp9" or "opencv-mp4v"
    extension: str  # of the files it writes
    h264: bool
    browser_playable: bool
    ffmpeg: str | None = None  # the ffmpeg executable, for "libx264"


def _open_capture(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise DensePoseError(f"no such video file: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DensePoseError(f"cannot open video (unsupported or damaged file): {path}")
    return capture


def _natural_key(path: Path) -> list:
    """frame_2.png before frame_10.png."""
    return [int(piece) if piece.isdigit() else piece.lower() for piece in re.split(r"(\d+)", path.name)]


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The images directly in `folder`, in natural order of their names (frame_2 before frame_10):
    the frames of a folder read as one video. Hidden files are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DensePoseError(f"no such folder of frames: {folder}")
    files = [path for path in folder.iterdir()
             if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")]
    if not files:
        raise DensePoseError(f"no image frames in folder {folder}")
    return sorted(files, key=_natural_key)


def probe_video(path: str | os.PathLike, folder_fps: float = DEFAULT_FPS) -> VideoInfo:
    """Frame rate, frame count and size of a video file, or of a folder of frames (whose rate is
    `folder_fps` and whose size is its first readable frame's)."""
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        for file in files:
            try:
                with Image.open(file) as image:
                    width, height = ImageOps.exif_transpose(image).size
                return VideoInfo(fps=folder_fps, frame_count=len(files), width=width, height=height)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
        raise DensePoseError(f"no frame in folder {path} can be read")
    capture = _open_capture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            fps=float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
            frame_count=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def _ignore(message: str) -> None:
    pass


def read_frames(
    path: str | os.PathLike, report: Callable[[str], None] = _ignore, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[np.ndarray | None]:
    """The frames of a video file, or of a folder of frames, in order, as HxWx3 uint8 RGB arrays.

    A frame that cannot be decoded is yielded as None, and told to `report` in one line, so the
    frames after it keep their place (a frame is never silently dropped where it can be noticed).
    Frames of a folder that differ in size from its first readable frame are resized to that size."""
    path = Path(path)
    return _folder_frames(path, report, max_pixels) if path.is_dir() else _file_frames(path, report)


def _frame_span(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def _file_frames(path: Path, report: Callable[[str], None]) -> Iterator[np.ndarray | None]:
    """A video file's frames. FFmpeg fails one read for each frame it cannot decode and goes on
    with the next one; reads are retried, and the failures that a decoded frame follows are
    yielded as None. After the last frame that decodes, the shortfall from the count the file lists
    is yielded as None too (a damaged or cut end), unless it is within that count's own error (some
    containers estimate it from the duration)."""
    capture = _open_capture(path)
    try:
        listed = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        index, failed = 0, 0  # frames yielded; failed reads since the last frame decoded
        while failed < MAX_UNDECODABLE_RUN:
            ok, frame = capture.read()
            if not ok:
                failed += 1
                continue
            if failed:
                report(f"{_frame_span(index, index + failed - 1)} could not be decoded")
                yield from [None] * failed
                index, failed = index + failed, 0
            index += 1
            yield np.ascontiguousarray(frame[:, :, ::-1]) if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, axis=2)
        if index == 0:
            raise DensePoseError(f"no frame could be decoded from video: {path}")
        if listed - index > max(2, listed // 100):
            report(f"{_frame_span(index, listed - 1)} of the {listed} the file lists could not be decoded "
                   "(damaged or truncated file)")
            yield from [None] * (listed - index)
    finally:
        capture.release()


def _folder_frames(folder: Path, report: Callable[[str], None], max_pixels: int) -> Iterator[np.ndarray | None]:
    size = None
    for index, file in enumerate(frame_files(folder)):
        try:
            frame = read_image(file, max_pixels)
        except DensePoseError as error:
            report(f"frame {index} could not be read: {error}")
            yield None
            continue
        if size is None:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        yield frame


def _ffmpeg_with_libx264() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        executable = imageio_ffmpeg.get_ffmpeg_exe()
        encoders = subprocess.run([executable, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    return executable if " libx264 " in encoders else None


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Discards what native code (OpenCV, FFmpeg) writes to the process's stderr meanwhile: a
    codec probe that fails prints errors there that are no error of ours."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _opencv_can_write(fourcc: str, extension: str) -> bool:
    with tempfile.TemporaryDirectory() as folder, _native_stderr_silenced():
        writer = cv2.VideoWriter(str(Path(folder) / f"probe{extension}"), cv2.VideoWriter_fourcc(*fourcc), 25.0, (16, 16))
        try:
            if not writer.isOpened():
                return False
            writer.write(np.zeros((16, 16, 3), np.uint8))
            return True
        finally:
            writer.release()


def choose_encoder() -> VideoEncoder:
    """The best video encoder installed here (see the module's docstring for the order)."""
    executable = _ffmpeg_with_libx264()
    if executable:
        return VideoEncoder("libx264", ".mp4", h264=True, browser_playable=True, ffmpeg=executable)
    if _opencv_can_write("avc1", ".mp4"):
        return VideoEncoder("opencv-avc1", ".mp4", h264=True, browser_playable=True)
    if _opencv_can_write("VP90", ".webm"):
        return VideoEncoder("opencv-vp9", ".webm", h264=False, browser_playable=True)
    if _opencv_can_write("mp4v", ".mp4"):
        return VideoEncoder("opencv-mp4v", ".mp4", h264=False, browser_playable=False)
    raise DensePoseError("no video encoder is available here; install imageio-ffmpeg (pip install imageio-ffmpeg)")


def _even(frame: np.ndarray) -> np.ndarray:
    pad_rows, pad_cols = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_rows or pad_cols:
        frame = np.pad(frame, ((0, pad_rows), (0, pad_cols), (0, 0)))
    return frame


@contextlib.contextmanager
def _ffmpeg_writer(executable: str, target: Path, fps: float, width: int, height: int) -> Iterator[Callable[[np.ndarray], None]]:
    rate = Fraction(fps).limit_denominator(1001)
    command = [
        executable, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-",
        "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-movflags", "+faststart", "-f", "mp4", str(target),
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)

        def failure() -> DensePoseError:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            return DensePoseError(f"ffmpeg failed to write {target}: {lines[-1] if lines else f'exit code {process.returncode}'}")

        try:
            yield lambda frame: process.stdin.write(frame.tobytes())
            process.stdin.close()
        except BrokenPipeError:
            process.wait()
            raise failure() from None
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.wait() != 0:
            raise failure()


@contextlib.contextmanager
def _opencv_writer(fourcc: str, target: Path, fps: float, width: int, height: int) -> Iterator[Callable[[np.ndarray], None]]:
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise DensePoseError(f"OpenCV could not open a {fourcc} video writer for {target}")
    try:
        yield lambda frame: writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: float, encoder: VideoEncoder) -> Iterator[Callable[[np.ndarray], None]]:
    """Context giving `write(frame)` for HxWx3 uint8 RGB frames (all of one size); the video
    appears at `path` only when the block ends without an error (Ctrl-C included)."""
    path = Path(path)
    state: dict[str, Callable[[np.ndarray], None]] = {}
    with atomic_path(path) as temporary, contextlib.ExitStack() as stack:

        def write(frame: np.ndarray) -> None:
            frame = _even(frame)
            if "write" not in state:
                height, width = frame.shape[:2]
                if encoder.ffmpeg:
                    state["write"] = stack.enter_context(_ffmpeg_writer(encoder.ffmpeg, temporary, fps, width, height))
                else:
                    fourcc = {"opencv-avc1": "avc1", "opencv-vp9": "VP90", "opencv-mp4v": "mp4v"}[encoder.name]
                    state["write"] = stack.enter_context(_opencv_writer(fourcc, temporary, fps, width, height))
            state["write"](frame)

        yield write
