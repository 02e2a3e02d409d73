"""Cross-cascading (Güler, Neverova, Kokkinos, CVPR 2018, §4.3 and Fig. 6): mask and COCO
keypoint branches run on the same pooled ROI features as the DensePose branch; the first-stage
outputs of all branches, brought to the pooled resolution and concatenated with the ROI
features, feed a second stage of every branch. Related tasks' predictions (where the joints
are, where the person ends) help place the dense correspondence; every stage is supervised.

Stage one's DensePose branch is the ordinary one (`roi_heads.densepose_head` and
`densepose_predictor`), so a cascade model extends, never renames, the plain architecture.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CHART_OUTPUT_STRIDE, ModelConfig
from ..definitions import CHART_FIELDS, NUM_KEYPOINTS, NUM_PART_LABELS
from .densepose_heads import ChartOutputs, ChartPredictor, DeepLabHead, V1ConvXHead


class MapPredictor(nn.Module):
    """A 4x4 stride-2 transposed convolution then x2 bilinear upsampling, as the chart
    predictor's: (R, C, P, P) -> (R, out_channels, 4P, 4P), the charts' grid."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.deconv(x), scale_factor=2, mode="bilinear", align_corners=False)


def densepose_trunk(config: ModelConfig, in_channels: int) -> nn.Module:
    if config.densepose_head == "deeplab":
        return DeepLabHead(in_channels, config.head_channels, config.head_convs)
    return V1ConvXHead(in_channels, config.head_channels, config.head_convs)


class TaskBranches(nn.Module):
    """The mask and keypoint branches of one stage (those the config enables): a conv trunk as
    V1ConvX's and a MapPredictor each."""

    def __init__(self, config: ModelConfig, in_channels: int):
        super().__init__()
        self.names: list[str] = []  # the branches this model has, in output order
        if config.cascade_mask:
            self.mask_head = V1ConvXHead(in_channels, config.head_channels, config.head_convs)
            self.mask_predictor = MapPredictor(config.head_channels, 1)
            self.names.append("mask")
        if config.cascade_keypoints:
            self.keypoint_head = V1ConvXHead(in_channels, config.head_channels, config.head_convs)
            self.keypoint_predictor = MapPredictor(config.head_channels, NUM_KEYPOINTS)
            self.names.append("keypoints")

    def forward(self, x: torch.Tensor) -> ChartOutputs:
        outputs = {}
        if "mask" in self.names:
            outputs["mask"] = self.mask_predictor(self.mask_head(x))
        if "keypoints" in self.names:
            outputs["keypoints"] = self.keypoint_predictor(self.keypoint_head(x))
        return outputs


def fused_channels(config: ModelConfig) -> int:
    """Channels of the stage-one outputs that the second stage reads."""
    charts = config.coarse_segm_channels + 3 * NUM_PART_LABELS  # fine_segm, u, v
    return charts + (1 if config.cascade_mask else 0) + (NUM_KEYPOINTS if config.cascade_keypoints else 0)


class SecondStage(nn.Module):
    """ROI features and stage-one outputs (average-pooled back to the ROI grid) -> a 1x1 conv
    + ReLU back to the ROI feature width -> a second DensePose branch and second task branches."""

    def __init__(self, config: ModelConfig, in_channels: int):
        super().__init__()
        self.fuse = nn.Conv2d(in_channels + fused_channels(config), in_channels, 1)
        self.densepose_head = densepose_trunk(config, in_channels)
        self.densepose_predictor = ChartPredictor(config, config.head_channels)
        self.tasks = TaskBranches(config, in_channels)

    def forward(self, pooled: torch.Tensor, first: ChartOutputs) -> ChartOutputs:
        names = list(CHART_FIELDS) + self.tasks.names
        previous = [F.avg_pool2d(first[name], CHART_OUTPUT_STRIDE).to(pooled.dtype) for name in names]
        x = F.relu(self.fuse(torch.cat([pooled, *previous], dim=1)))
        outputs = self.densepose_predictor(self.densepose_head(x))
        outputs.update(self.tasks(x))
        return outputs
