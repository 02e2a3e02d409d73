"""The DensePose branch: the Panoptic-FPN decoder that merges p2..p5, the two trunk heads
(V1ConvX and DeepLab) and the chart predictor with its optional confidence outputs."""
from __future__ import annotations

import math
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..definitions import NUM_PART_LABELS, SEGM_CONFIDENCE_FIELDS, UV_CONFIDENCE_FIELDS
from .layers import Conv2d


class Decoder(nn.Module):
    """Sum of per-level heads, each conv3x3+ReLU (+ x2 bilinear upsampling until stride 4), then a
    1x1 projection: one map at stride 4 (p2's resolution)."""

    def __init__(self, channels: int = 256, strides: tuple[int, ...] = (4, 8, 16, 32), common_stride: int = 4):
        super().__init__()
        self.level_names = [f"p{int(math.log2(s))}" for s in strides]
        for name, stride in zip(self.level_names, strides):
            units = max(1, int(math.log2(stride) - math.log2(common_stride)))
            layers: list[nn.Module] = []
            for _ in range(units):
                layers.append(Conv2d(channels, channels, 3, padding=1, activation=F.relu))
                if stride != common_stride:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(name, nn.Sequential(*layers))
        self.predictor = Conv2d(channels, channels, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = getattr(self, self.level_names[0])(features[0])
        for name, feature in zip(self.level_names[1:], features[1:]):
            x = x + getattr(self, name)(feature)
        return self.predictor(x)


class V1ConvXHead(nn.Module):
    """`head_convs` x (conv3x3 + ReLU), with biases."""

    def __init__(self, in_channels: int, channels: int = 512, num_convs: int = 8):
        super().__init__()
        self.num_convs = num_convs
        for i in range(num_convs):
            self.add_module(f"body_conv_fcn{i + 1}", Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


def _conv_gn_relu(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation if kernel == 3 else 0
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False),
        nn.GroupNorm(32, out_channels),
        nn.ReLU(),
    )


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average, 1x1 conv + GN + ReLU, broadcast back."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.GroupNorm(32, out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with DensePose's rates (6, 12, 56)."""

    def __init__(self, in_channels: int = 256, rates: tuple[int, ...] = (6, 12, 56), out_channels: int = 256):
        super().__init__()
        branches: list[nn.Module] = [_conv_gn_relu(in_channels, out_channels, 1)]
        branches += [_conv_gn_relu(in_channels, out_channels, 3, rate) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Module):
    """ASPP, then `head_convs` x (conv3x3 without bias + GroupNorm(32) + ReLU)."""

    def __init__(self, in_channels: int, channels: int = 512, num_convs: int = 8):
        super().__init__()
        self.ASPP = ASPP(in_channels, out_channels=in_channels)
        self.num_convs = num_convs
        for i in range(num_convs):
            conv = Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False, norm=nn.GroupNorm(32, channels))
            self.add_module(f"body_conv_fcn{i + 1}", conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ASPP(x)
        for i in range(self.num_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class ChartOutputs(TypedDict, total=False):
    """Raw DensePose head outputs of R detections on the S x S chart grid (S = 4 x the pooled
    size), field names as in `definitions`. Every model has the four charts; the rest only
    models that predict them."""

    coarse_segm: torch.Tensor  # (R, 2, S, S) person/background logits; (R, 15, S, S) coarse parts for legacy models
    fine_segm: torch.Tensor  # (R, 25, S, S) logits of background and the 24 parts
    u: torch.Tensor  # (R, 25, S, S) U of each part's chart
    v: torch.Tensor  # (R, 25, S, S)
    sigma_2: torch.Tensor  # (R, 25, S, S) raw UV confidence (WC1/WC2 models)
    kappa_u: torch.Tensor  # (R, 25, S, S) (WC2 models)
    kappa_v: torch.Tensor  # (R, 25, S, S)
    fine_segm_confidence: torch.Tensor  # (R, 1, S, S) segmentation temperature (M models)
    coarse_segm_confidence: torch.Tensor  # (R, 1, S, S)
    mask: torch.Tensor  # (R, 1, S, S) person mask logits (cascade models with a mask branch)
    keypoints: torch.Tensor  # (R, 17, S, S) keypoint heatmap logits (cascade models with a keypoint branch)


# Output field -> checkpoint module name, in the order detectron2's predictor declares them.
CHART_MODULE_NAMES = {"coarse_segm": "ann_index_lowres", "fine_segm": "index_uv_lowres", "u": "u_lowres", "v": "v_lowres"}


class ChartPredictor(nn.Module):
    """One 4x4 stride-2 transposed convolution per output field, then x2 bilinear upsampling.
    Segmentation confidences (M models) rescale the segmentation logits: a learned per-pixel
    temperature, applied before anything resamples the logits."""

    def __init__(self, config: ModelConfig, in_channels: int):
        super().__init__()
        channels = {"coarse_segm": config.coarse_segm_channels, "fine_segm": NUM_PART_LABELS, "u": NUM_PART_LABELS, "v": NUM_PART_LABELS}
        for name in UV_CONFIDENCE_FIELDS.get(config.uv_confidence or "", ()):
            channels[name] = NUM_PART_LABELS
        if config.segm_confidence:
            for name in SEGM_CONFIDENCE_FIELDS:
                channels[name] = 1
        self.fields = list(channels)
        for name, out_channels in channels.items():
            self.add_module(self.module_name(name), nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1))

    @staticmethod
    def module_name(field: str) -> str:
        return CHART_MODULE_NAMES.get(field, f"{field}_lowres")

    def forward(self, x: torch.Tensor) -> ChartOutputs:
        outputs: ChartOutputs = {}
        for name in self.fields:
            y = getattr(self, self.module_name(name))(x)
            outputs[name] = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        for name in SEGM_CONFIDENCE_FIELDS:
            if name in outputs:
                outputs[name] = F.softplus(outputs[name]) + 0.01
        if "fine_segm_confidence" in outputs:
            outputs["fine_segm"] = outputs["fine_segm"] * outputs["fine_segm_confidence"]
            outputs["coarse_segm"] = outputs["coarse_segm"] * outputs["coarse_segm_confidence"]
        return outputs
