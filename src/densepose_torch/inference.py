"""Running a model on images: `Predictor(model)(image) -> DensePoseResult`.

Pre-processing is detectron2's DefaultPredictor: the image as BGR uint8, resized with Pillow's
bilinear filter so its short side is 800 (long side at most 1333), then normalised and padded
inside the model. Results come back in the original image's pixels.
"""
from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import replace
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
from PIL import Image

from .allocator import keep_freed_memory
from .chart_symmetry import FlipSymmetry, average_with_mirrored, load_flip_symmetry, mirror_boxes
from .checkpoint import load_model
from .devices import resolve_device
from .errors import DensePoseError
from .export.runtime import BACKENDS, RUNTIME_SUFFIXES, RuntimeModel, load_runtime_model
from .io.images import ChannelOrder, ImageInput, to_rgb_array
from .modeling import DensePoseRCNN, RawDetections
from .modeling.fast import fast_copy
from .postprocessing import rescale_detections, to_result
from .results import ChartResult, DenseMaps, DensePoseResult

__all__ = ["Predictor", "ChartResult", "DenseMaps", "DensePoseResult", "precision_name", "resized_shape"]

Precision = Literal["exact", "fast"]
# Earlier names of the two modes, still accepted.
PRECISION_ALIASES = {"exact": "exact", "fast": "fast", "fp32": "exact", "bf16": "fast"}


def resized_shape(height: int, width: int, short_side: int, max_side: int) -> tuple[int, int]:
    """(new height, new width): short side scaled to `short_side`, long side capped at `max_side`,
    rounded half up, as detectron2's ResizeShortestEdge does."""
    scale = short_side * 1.0 / min(height, width)
    new_h, new_w = (short_side * 1.0, scale * width) if height < width else (scale * height, short_side * 1.0)
    if max(new_h, new_w) > max_side:
        scale = max_side * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def precision_name(precision: str) -> Precision:
    """"exact" or "fast" for any accepted spelling ("fp32" and "bf16" are the earlier names)."""
    try:
        return PRECISION_ALIASES[precision]  # type: ignore[return-value]
    except (KeyError, TypeError):
        raise DensePoseError(f"precision must be 'exact' or 'fast', not {precision!r}") from None


@contextlib.contextmanager
def _ieee_float32(device: torch.device):
    """On CUDA, float32 convolutions and matrix products without TF32 and with deterministic
    cuDNN algorithms for the duration (the exact path); elsewhere nothing to do."""
    if device.type != "cuda":
        yield
        return
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


class Predictor:
    """Runs a DensePose R-CNN on images.

    precision="exact" reproduces detectron2's float32 arithmetic on the CPU (bit for bit where oneDNN
    picks the same kernels) and in IEEE float32 on CUDA.
    "fast" runs a copy of the whole network with FrozenBN folded into the convolutions, in
    bfloat16 on CPUs with AVX512-BF16/AMX and on CUDA (float16 on GPUs without bfloat16; float32
    on other CPUs), channels-last, resampling only each pixel's own part for U/V
    (`modeling.fast` says what each step buys; the README gives the measured agreement).

    Only detections scoring above `min_score` (default: the model's own 0.05) are kept, and with
    `top_person` only the best one: both are applied inside the box predictor, before NMS and
    the DensePose head, as detectron2 applies SCORE_THRESH_TEST and DETECTIONS_PER_IMAGE, so the
    head never runs on people that would be thrown away. `batch` and `__call__` may override
    them per call.

    `flip=True` is the test-time flip: the DensePose head runs a second time on the mirrored
    image at the mirrored boxes, and the two passes' raw outputs are averaged
    (`chart_symmetry`); boxes and scores are the first pass's. It costs a second backbone pass.
    Models on DensePose's SMPL charts need `uv_symmetry`, the path of DensePose's
    UV_symmetry_transforms.mat; the synthetic body's mirror map is built in. `flip=None` follows
    the model's `test_flip` (on for the embedded default model, off for the zoo's).

    `backend` chooses what runs the network: "torch" (this package's modules), or the model
    exported to ONNX and run by "onnxruntime" or "openvino" (on the CPU, and ONNX Runtime also on
    a CUDA `device` with onnxruntime-gpu; float32 unless the file is an int8 export), with the same
    pre- and post-processing (on the CPU). The model is a loaded DensePoseRCNN
    or anything `load_model` names (zoo name, checkpoint path, "default"); `.onnx` and OpenVINO
    `.xml` files from `densepose export` run on onnxruntime and openvino respectively unless
    `backend` says otherwise.

    The model handed in is never changed or moved: on another device, or in fast mode, the
    predictor works on its own copy. On Linux CPUs a predictor also asks glibc's malloc to keep
    freed memory for reuse (see `allocator.keep_freed_memory`).
    Images are paths, PIL images or arrays; arrays are RGB unless channel_order="bgr".
    """

    def __init__(
        self,
        model: DensePoseRCNN | RuntimeModel | str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        precision: str = "exact",
        min_score: float | None = None,
        top_person: bool = False,
        backend: str | None = None,
        flip: bool | None = None,
        uv_symmetry: str | os.PathLike | None = None,
    ):
        self.precision = precision_name(precision)
        self.min_score = _check_min_score(min_score)
        self.top_person = top_person
        requested = resolve_device(device) if device is not None else None
        model, backend = _network(model, backend, requested)
        if backend != "torch":
            if self.precision == "fast":
                raise DensePoseError(f"precision 'fast' is the torch backend's mode; {backend} runs the exported graph as it is (use an int8 export for speed)")
            device = torch.device("cpu")  # pre- and post-processing; the runtime holds the network where it runs
        else:
            device = requested or model.device
        if self.precision == "fast":
            model = fast_copy(model, device)
        elif backend == "torch" and device != model.device:
            model = copy.deepcopy(model).to(device)
        self.backend = backend
        self.model = model
        self.device = device
        self.config = model.config
        self.flip_symmetry = _flip_symmetry(self.config.test_flip if flip is None else flip, uv_symmetry, self.config.chart_body)
        if device.type == "cpu":
            keep_freed_memory()

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(3, H', W') float32 BGR tensor of the resized image."""
        height, width = rgb.shape[:2]
        new_h, new_w = resized_shape(height, width, self.config.min_size_test, self.config.max_size_test)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        if (new_h, new_w) != (height, width):
            bgr = np.asarray(Image.fromarray(bgr).resize((new_w, new_h), Image.BILINEAR))
        return torch.from_numpy(bgr.astype(np.float32).transpose(2, 0, 1).copy())

    def __call__(
        self, image: ImageInput, channel_order: ChannelOrder = "rgb", min_score: float | None = None, top_person: bool | None = None
    ) -> DensePoseResult:
        return self.batch([image], channel_order, min_score, top_person)[0]

    def batch(
        self,
        images: Sequence[ImageInput] | Iterable[ImageInput],
        channel_order: ChannelOrder = "rgb",
        min_score: float | None = None,
        top_person: bool | None = None,
    ) -> list[DensePoseResult]:
        """Results for several images, in order. On CUDA, images whose resized sizes pad to the
        same shape run as one batch (results equal single-image ones up to float rounding); on
        the CPU batching is no faster, so images run one at a time and results are identical.
        `min_score` and `top_person` replace the predictor's own for this call."""
        arrays = [to_rgb_array(image, channel_order) for image in images]
        threshold = self.min_score if min_score is None else _check_min_score(min_score)
        best_only = self.top_person if top_person is None else top_person
        return self._run(arrays, None, threshold, 1 if best_only else None)

    def predict_boxes(
        self, image: ImageInput, boxes: np.ndarray | torch.Tensor | Sequence[Sequence[float]], channel_order: ChannelOrder = "rgb",
        scores: np.ndarray | Sequence[float] | None = None,
    ) -> DensePoseResult:
        """DensePose on the given XYXY boxes (original-image pixels), skipping detection: for
        users with their own person detector. Scores default to 1."""
        rgb = to_rgb_array(image, channel_order)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) if not isinstance(boxes, torch.Tensor) else boxes.float().reshape(-1, 4).cpu().numpy()
        if not np.isfinite(boxes).all():
            raise DensePoseError("boxes must be finite numbers")
        result = self._run([rgb], [boxes], None, None)[0]
        if scores is not None:
            given = np.asarray(scores, dtype=np.float32).reshape(-1)
            if given.shape[0] != boxes.shape[0]:
                raise DensePoseError(f"{given.shape[0]} scores for {boxes.shape[0]} boxes")
            kept = self._kept_boxes(boxes, rgb.shape[:2])
            result = replace(result, scores=given[kept])
        return result

    @staticmethod
    def _kept_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, size[1])
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, size[0])
        return np.flatnonzero((clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))

    @torch.inference_mode()
    def _run(
        self, arrays: list[np.ndarray], boxes: list[np.ndarray] | None, min_score: float | None, max_detections: int | None
    ) -> list[DensePoseResult]:
        inputs = [self.preprocess(rgb) for rgb in arrays]
        groups: dict[object, list[int]] = {}
        for index, tensor in enumerate(inputs):
            key = tuple(-(-s // 32) * 32 for s in tensor.shape[-2:]) if self.device.type == "cuda" else index
            groups.setdefault(key, []).append(index)
        results: list[DensePoseResult | None] = [None] * len(arrays)
        for members in groups.values():
            member_boxes = None
            if boxes is not None:
                member_boxes = [self._boxes_to_input(boxes[i], arrays[i].shape[:2], inputs[i].shape[-2:]) for i in members]
            with _ieee_float32(self.device) if self.precision == "exact" else contextlib.nullcontext():
                raw = self.model([inputs[i] for i in members], member_boxes, min_score, max_detections)
                if self.flip_symmetry is not None:
                    raw = self._with_mirrored_pass([inputs[i] for i in members], raw, self.flip_symmetry)
            for i, detections in zip(members, raw):
                original = arrays[i].shape[:2]
                rescaled = rescale_detections(detections, tuple(inputs[i].shape[-2:]), original)
                results[i] = to_result(rescaled, original, exact=self.precision == "exact", chart_body=self.config.chart_body)
        return results  # type: ignore[return-value]

    def _with_mirrored_pass(self, images: list[torch.Tensor], raw: list[RawDetections], symmetry: FlipSymmetry) -> list[RawDetections]:
        """`raw` with each person's DensePose outputs averaged with those of the mirrored image
        at the mirrored box (test-time flip). Images without people get no second pass."""
        with_people = [k for k, detections in enumerate(raw) if len(detections.boxes)]
        if not with_people:
            return raw
        boxes = [mirror_boxes(raw[k].boxes, int(images[k].shape[-1])) for k in with_people]
        mirrored = self.model([images[k].flip(-1) for k in with_people], boxes)
        averaged = list(raw)
        for k, other in zip(with_people, mirrored):
            averaged[k] = replace(raw[k], densepose=average_with_mirrored(raw[k].densepose, other.densepose, symmetry))
        return averaged

    @staticmethod
    def _boxes_to_input(boxes: np.ndarray, original: tuple[int, int], resized: torch.Size) -> torch.Tensor:
        """User boxes (original pixels) in the resized input's pixels, each coordinate scaled as
        detectron2's transform of boxes does."""
        scaled = torch.from_numpy(boxes.copy())
        scaled[:, 0::2] *= resized[1] * 1.0 / original[1]
        scaled[:, 1::2] *= resized[0] * 1.0 / original[0]
        return scaled


def _network(
    model: DensePoseRCNN | RuntimeModel | str | os.PathLike | None, backend: str | None, device: torch.device | None
) -> tuple[DensePoseRCNN | RuntimeModel, str]:
    """The network a Predictor runs and the backend it runs on (None: the model's own). An
    exported graph is loaded for `device` (None: the CPU); a torch model is moved later."""
    if backend is not None and backend not in BACKENDS:
        raise DensePoseError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if isinstance(model, RuntimeModel):
        if backend not in (None, model.backend):
            raise DensePoseError(f"this model is already loaded for {model.backend}; pass its file to run it on {backend}")
        if device is not None and device.type != "cpu":
            raise DensePoseError("this model is already loaded for the CPU; pass its file to run it on CUDA")
        return model, model.backend
    if not isinstance(model, DensePoseRCNN):
        suffix = os.path.splitext(str(model))[1].lower() if model is not None else ""
        if suffix in RUNTIME_SUFFIXES:
            if backend == "torch":
                raise DensePoseError(f"{os.path.basename(str(model))} is an exported graph: run it with backend onnxruntime or openvino")
            chosen = backend or ("openvino" if suffix == ".xml" else "onnxruntime")
            return load_runtime_model(model, chosen, device=device), chosen
        model = load_model(model)
    if backend not in (None, "torch"):  # a torch model exported on the fly, in memory
        return load_runtime_model(model, backend, device=device), backend
    return model, "torch"


def _flip_symmetry(flip: bool, uv_symmetry: str | os.PathLike | None, chart_body: str) -> FlipSymmetry | None:
    """The mirror map a test-time flip needs for this model's charts; None without the flip."""
    if not flip:
        if uv_symmetry is not None:
            raise DensePoseError("uv_symmetry is only used by the test-time flip (flip=True, --flip)")
        return None
    if chart_body == "synthetic":
        if uv_symmetry is not None:
            raise DensePoseError("this model's charts are our synthetic body's, whose mirror map is built in: leave out uv_symmetry (--uv-symmetry)")
        return load_flip_symmetry(None)
    if uv_symmetry is None:
        raise DensePoseError("the test-time flip of a model on DensePose's SMPL charts needs DensePose's UV_symmetry_transforms.mat: "
                             "pass its path as uv_symmetry (--uv-symmetry PATH)")
    return load_flip_symmetry(uv_symmetry)


def _check_min_score(min_score: float | None) -> float | None:
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise DensePoseError(f"min_score must be between 0 and 1, not {min_score}")
    return min_score
