"""ResNet bottom-up network in detectron2's MSRA/Caffe2 flavour: FrozenBN everywhere and, in
bottleneck blocks, the stride on the first 1x1 convolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2d, FrozenBatchNorm2d

BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STAGE_NAMES = ("res2", "res3", "res4", "res5")


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> Conv2d:
    return Conv2d(
        in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False, norm=FrozenBatchNorm2d(out_channels)
    )


class BasicStem(nn.Module):
    def __init__(self, out_channels: int = 64):
        super().__init__()
        self.conv1 = _conv_bn(3, out_channels, 7, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int, stride: int):
        super().__init__()
        self.shortcut = _conv_bn(in_channels, out_channels, 1, stride) if in_channels != out_channels else None
        self.conv1 = _conv_bn(in_channels, bottleneck_channels, 1, stride)
        self.conv2 = _conv_bn(bottleneck_channels, bottleneck_channels, 3)
        self.conv3 = _conv_bn(bottleneck_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.shortcut = _conv_bn(in_channels, out_channels, 1, stride) if in_channels != out_channels else None
        self.conv1 = _conv_bn(in_channels, out_channels, 3, stride)
        self.conv2 = _conv_bn(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


class ResNet(nn.Module):
    """Outputs res2..res5 (strides 4, 8, 16, 32). `base_channels` is the stem's width; the stages
    have 4x (bottleneck) or 1x (basic blocks) of it, doubling per stage (64: the standard nets)."""

    def __init__(self, depth: int = 50, base_channels: int = 64):
        super().__init__()
        self.stem = BasicStem(base_channels)
        bottleneck = depth >= 50
        in_channels = base_channels
        out_channels = 4 * base_channels if bottleneck else base_channels
        width = base_channels
        self.out_channels: list[int] = []
        for index, (name, blocks) in enumerate(zip(STAGE_NAMES, BLOCKS_PER_STAGE[depth])):
            stage = []
            for block in range(blocks):
                stride = 2 if block == 0 and index > 0 else 1
                if bottleneck:
                    stage.append(BottleneckBlock(in_channels, out_channels, width, stride))
                else:
                    stage.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*stage))
            self.out_channels.append(out_channels)
            out_channels *= 2
            width *= 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs
