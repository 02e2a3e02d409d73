"""Feature Pyramid Network over the ResNet stages: p2..p5 from lateral + top-down sums, and p6
by subsampling p5 (detectron2's LastLevelMaxPool)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2d
from .resnet import ResNet

FPN_STRIDES = (4, 8, 16, 32, 64)


class FPN(nn.Module):
    def __init__(self, bottom_up: ResNet, out_channels: int = 256):
        super().__init__()
        self.bottom_up = bottom_up
        self.out_channels = out_channels
        for level, in_channels in zip((2, 3, 4, 5), bottom_up.out_channels):
            self.add_module(f"fpn_lateral{level}", Conv2d(in_channels, out_channels, 1))
            self.add_module(f"fpn_output{level}", Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[p2, p3, p4, p5, p6] for a padded image batch."""
        res2, res3, res4, res5 = self.bottom_up(x)
        # The top-down pathway carries the lateral sums, not the smoothed outputs.
        prev = self.fpn_lateral5(res5)
        outputs = [self.fpn_output5(prev)]
        for level, feature in ((4, res4), (3, res3), (2, res2)):
            prev = getattr(self, f"fpn_lateral{level}")(feature) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            outputs.insert(0, getattr(self, f"fpn_output{level}")(prev))
        outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2, padding=0))
        return outputs
