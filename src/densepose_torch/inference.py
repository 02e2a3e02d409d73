"""Running a model on images: `Predictor(model)(image) -> DensePoseResult`.

Pre-processing is detectron2's DefaultPredictor: the image as BGR uint8, resized with Pillow's
bilinear filter so its short side is 800 (long side at most 1333), then normalised and padded
inside the model. Results come back in the original image's pixels.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import DensePoseError
from .io.images import ChannelOrder, ImageInput, to_rgb_array
from .modeling import DensePoseRCNN
from .postprocessing import rescale_detections, to_result
from .results import ChartResult, DenseMaps, DensePoseResult

__all__ = ["Predictor", "ChartResult", "DenseMaps", "DensePoseResult", "resized_shape"]

Precision = Literal["fp32", "bf16"]


def resized_shape(height: int, width: int, short_side: int, max_side: int) -> tuple[int, int]:
    """(new height, new width): short side scaled to `short_side`, long side capped at `max_side`,
    rounded half up, as detectron2's ResizeShortestEdge does."""
    scale = short_side * 1.0 / min(height, width)
    new_h, new_w = (short_side * 1.0, scale * width) if height < width else (scale * height, short_side * 1.0)
    if max(new_h, new_w) > max_side:
        scale = max_side * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Predictor:
    """Runs a DensePose R-CNN on images.

    precision="fp32" reproduces detectron2 bit for bit. "bf16" runs the DensePose branch (decoder,
    head, predictor: almost all the arithmetic when several people are found) in bfloat16 on CPUs
    with AVX512-BF16/AMX and on CUDA, and resamples only the labelled part's U/V: the same people
    are found, their charts agree with the exact ones on about 99 % of pixels.
    Images are paths, PIL images or arrays; arrays are RGB unless channel_order="bgr".
    """

    def __init__(self, model: DensePoseRCNN, device: str | torch.device | None = None, precision: Precision = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise DensePoseError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
        device = torch.device(device) if device is not None else model.device
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DensePoseError("CUDA was requested but this torch build has no usable GPU; use --device cpu")
        if precision == "bf16" and not _bf16_supported(device):
            raise DensePoseError(f"bf16 is not supported on this {device.type} (it needs AVX512-BF16/AMX or a recent GPU); use fp32")
        self.model = model.to(device).eval()
        self.device = device
        self.precision: Precision = precision
        self.config = model.config

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(3, H', W') float32 BGR tensor of the resized image."""
        height, width = rgb.shape[:2]
        new_h, new_w = resized_shape(height, width, self.config.min_size_test, self.config.max_size_test)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        if (new_h, new_w) != (height, width):
            bgr = np.asarray(Image.fromarray(bgr).resize((new_w, new_h), Image.BILINEAR))
        return torch.from_numpy(bgr.astype(np.float32).transpose(2, 0, 1).copy())

    def __call__(self, image: ImageInput, channel_order: ChannelOrder = "rgb") -> DensePoseResult:
        return self.batch([image], channel_order)[0]

    def batch(self, images: Sequence[ImageInput] | Iterable[ImageInput], channel_order: ChannelOrder = "rgb") -> list[DensePoseResult]:
        """Results for several images, in order. On CUDA, images whose resized sizes pad to the
        same shape run as one batch (results equal single-image ones up to float rounding); on
        the CPU batching is no faster, so images run one at a time and results are identical."""
        arrays = [to_rgb_array(image, channel_order) for image in images]
        return self._run(arrays, None)

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
        result = self._run([rgb], [boxes])[0]
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
    def _run(self, arrays: list[np.ndarray], boxes: list[np.ndarray] | None) -> list[DensePoseResult]:
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
            raw = self.model([inputs[i] for i in members], member_boxes, torch.bfloat16 if self.precision == "bf16" else None)
            for i, detections in zip(members, raw):
                original = arrays[i].shape[:2]
                rescaled = rescale_detections(detections, tuple(inputs[i].shape[-2:]), original)
                results[i] = to_result(rescaled, original, exact=self.precision == "fp32")
        return results  # type: ignore[return-value]

    @staticmethod
    def _boxes_to_input(boxes: np.ndarray, original: tuple[int, int], resized: torch.Size) -> torch.Tensor:
        """User boxes (original pixels) in the resized input's pixels, as detectron2's
        transform of boxes does: scale each coordinate, then clip."""
        scaled = torch.from_numpy(boxes.copy())
        scaled[:, 0::2] *= resized[1] * 1.0 / original[1]
        scaled[:, 1::2] *= resized[0] * 1.0 / original[0]
        return scaled
