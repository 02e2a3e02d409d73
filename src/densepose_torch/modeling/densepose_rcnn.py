"""DensePose R-CNN: backbone + FPN -> RPN proposals -> person boxes -> DensePose charts.

The module tree mirrors detectron2's (`backbone.bottom_up`, `proposal_generator.rpn_head`,
`roi_heads.*`) so the official checkpoints load strictly without renaming. Inputs are already
resized BGR images; resizing and the conversion of raw outputs to per-box charts live in
`densepose_torch.inference`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..definitions import NUM_KEYPOINTS
from .densepose_heads import ChartOutputs
from .fpn import FPN, FPN_STRIDES
from .resnet import ResNet
from .roi_heads import DensePoseROIHeads
from .rpn import RPN

PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
SIZE_DIVISIBILITY = 32  # the largest FPN stride the ROI heads pool from


@dataclass
class RawDetections:
    """Model output for one image, in the resized input's pixel coordinates."""

    boxes: torch.Tensor  # (N, 4) XYXY
    scores: torch.Tensor  # (N,)
    densepose: ChartOutputs  # field -> (N, C, S, S)


class DensePoseRCNN(nn.Module):
    def __init__(self, config: ModelConfig, name: str = "custom"):
        super().__init__()
        self.config = config
        self.name = name
        self.backbone = FPN(ResNet(config.depth, config.base_channels), config.fpn_channels)
        self.proposal_generator = RPN(
            config.fpn_channels,
            FPN_STRIDES,
            config.rpn_pre_nms_topk_test,
            config.rpn_post_nms_topk_test,
            config.rpn_nms_threshold,
        )
        self.roi_heads = DensePoseROIHeads(config)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN_BGR).view(3, 1, 1), persistent=False)
        # How the normalised image enters the backbone; `modeling.fast.fast_copy` changes both.
        self.compute_dtype = torch.float32
        self.channels_last = False

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def batch_images(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Subtract the BGR mean and zero-pad to a common size divisible by 32 (float32)."""
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        height = -(-max(h for h, _ in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        width = -(-max(w for _, w in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        batch = images[0].new_zeros((len(images), 3, height, width))
        for i, image in enumerate(images):
            batch[i, :, : sizes[i][0], : sizes[i][1]] = image - self.pixel_mean
        return batch, sizes

    def backbone_input(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The padded, normalised batch in the backbone's dtype and memory layout, and the sizes
        of the images in it."""
        batch, sizes = self.batch_images([im.to(self.device, torch.float32) for im in images])
        if self.compute_dtype != torch.float32 or self.channels_last:
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            batch = batch.to(dtype=self.compute_dtype, memory_format=memory_format)
        return batch, sizes

    def forward(
        self,
        images: list[torch.Tensor],
        boxes: list[torch.Tensor] | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[RawDetections]:
        """Detect people and predict their charts on (3, H, W) float BGR 0..255 images.
        `score_threshold` and `max_detections` replace the config's test-time values (0.05 and
        100) inside the box predictor, before NMS, as detectron2's SCORE_THRESH_TEST and
        DETECTIONS_PER_IMAGE do: only the people kept reach the DensePose branch.
        With `boxes` (one (Ni, 4) tensor per image, input-image pixels), skip detection and run
        the DensePose branch on those boxes; their scores are reported as 1."""
        batch, sizes = self.backbone_input(images)
        features = self.backbone(batch)
        if boxes is None:
            proposals = [p for p, _ in self.proposal_generator(features, sizes)]
            detections = self.roi_heads.detect(features, proposals, sizes, score_threshold, max_detections)
        else:
            detections = [(b.to(self.device, torch.float32).reshape(-1, 4), torch.ones(len(b), device=self.device)) for b in boxes]
        det_boxes = [b for b, _ in detections]
        counts = [len(b) for b in det_boxes]
        if sum(counts):
            outputs = self.roi_heads.densepose(features, det_boxes)
        elif self.config.cascade_keypoints:
            # so that a keypoint model reports (0, 17, 3) keypoints, not none, for an empty image
            size = self.config.chart_size
            outputs = {"keypoints": batch.new_zeros((0, NUM_KEYPOINTS, size, size), dtype=torch.float32)}
        else:
            outputs = {}
        results = []
        start = 0
        for (det, scores), count in zip(detections, counts):
            results.append(RawDetections(det, scores, {k: v[start : start + count] for k, v in outputs.items()}))
            start += count
        return results


def build_model(config: ModelConfig | None = None, name: str = "custom") -> DensePoseRCNN:
    """A DensePose R-CNN with freshly initialised weights (PyTorch defaults), in eval mode."""
    return DensePoseRCNN(config or ModelConfig(), name).eval()
