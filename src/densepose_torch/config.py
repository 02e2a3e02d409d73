"""The architecture and test-time settings of a DensePose R-CNN, as one small frozen dataclass.

Defaults are detectron2's "improved baseline" (`densepose_rcnn_R_50_FPN_s1x`); the model zoo
(`zoo.py`) spells out every official variant, and smaller backbones/heads are for training on
modest hardware.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from .errors import DensePoseError

# Chart outputs are 4x the pooled resolution: the predictor's stride-2 deconvolution, then x2 upsampling.
CHART_OUTPUT_STRIDE = 4

HeadType = Literal["v1convx", "deeplab"]
UVConfidence = Literal["iid_iso", "indep_aniso"]
ChartBody = Literal["smpl", "synthetic"]


@dataclass(frozen=True)
class ModelConfig:
    # Backbone: ResNet (FrozenBN, Caffe2/MSRA style stride in the 1x1 conv) + FPN p2..p6.
    depth: int = 50
    base_channels: int = 64  # stem width; every ResNet stage scales with it (64 = the zoo's)
    fpn_channels: int = 256
    # DensePose branch.
    densepose_head: HeadType = "v1convx"
    decoder: bool = True  # Panoptic-FPN decoder merging p2..p5 at stride 4 (all but legacy)
    pooler_resolution: int = 28  # 14 for legacy (multi-level pooling from p2..p5)
    head_channels: int = 512
    head_convs: int = 8
    coarse_segm_channels: int = 2  # 15 (background + 14 parts) for legacy
    uv_confidence: UVConfidence | None = None
    segm_confidence: bool = False
    # Cross-cascading (Güler et al. 2018, §4.3): mask and/or COCO keypoint branches on the same
    # ROI features; the first-stage outputs of every branch, concatenated with the ROI features,
    # feed a second stage of every branch, whose DensePose outputs are what inference returns.
    # Off in every zoo architecture.
    cascade_mask: bool = False
    cascade_keypoints: bool = False
    # Box branch. detectron2 pools boxes with ROIAlign (aligned=False, 2 samples per bin) in the
    # 22 human models and ROIAlignV2 (aligned=True, adaptive samples) in the Atop10P family.
    box_pooler_aligned: bool = False
    box_pooler_sampling_ratio: int = 2
    box_fc_dim: int = 1024
    # Test-time behaviour.
    min_size_test: int = 800
    max_size_test: int = 1333
    rpn_pre_nms_topk_test: int = 1000
    rpn_post_nms_topk_test: int = 1000
    rpn_nms_threshold: float = 0.7
    score_threshold_test: float = 0.05
    nms_threshold_test: float = 0.5
    detections_per_image: int = 100
    # Box voting (Gidaris & Komodakis 2015; Detectron's BBOX_VOTE): each detection NMS keeps takes
    # the score-weighted mean of the boxes above the score threshold that overlap it at IoU >= this
    # value, itself included, so that its place no longer rests on one regression alone: a small
    # change of the input (noise, int8 rounding) then moves it much less. Scores and which people are
    # found do not change. None (every zoo model: detectron2 has no voting) keeps NMS's box as it is.
    box_vote_iou: float | None = None
    # Test-time flip (`chart_symmetry`): the DensePose head also runs on the mirrored image at the
    # mirrored boxes and the two passes are averaged; boxes and scores stay the first pass's. On in
    # the embedded default model, whose synthetic body's mirror map is built in; models on SMPL
    # charts also need DensePose's UV_symmetry_transforms.mat (`Predictor(uv_symmetry=...)`).
    test_flip: bool = False
    # The body whose charts the model predicts: "smpl" (DensePose-COCO's, so every zoo model's) or
    # "synthetic" (our synthetic body's, learnt from `densepose synth` data, as the embedded default
    # model's). Only SMPL charts map to SMPL vertices (densepose_torch.surface).
    chart_body: ChartBody = "smpl"

    def __post_init__(self) -> None:
        if self.depth not in (18, 34, 50, 101):
            raise DensePoseError(f"ResNet depth must be 18, 34, 50 or 101, not {self.depth}")
        if self.base_channels < 1:
            raise DensePoseError(f"base_channels must be positive, not {self.base_channels}")
        if self.densepose_head not in ("v1convx", "deeplab"):
            raise DensePoseError(f"densepose_head must be 'v1convx' or 'deeplab', not {self.densepose_head!r}")
        if self.chart_body not in ("smpl", "synthetic"):
            raise DensePoseError(f"chart_body must be 'smpl' or 'synthetic', not {self.chart_body!r}")
        if self.box_vote_iou is not None and not 0 < self.box_vote_iou <= 1:
            raise DensePoseError(f"box_vote_iou must be None or in (0, 1], not {self.box_vote_iou!r}")
        if self.uv_confidence not in (None, "iid_iso", "indep_aniso"):
            raise DensePoseError(f"uv_confidence must be None, 'iid_iso' or 'indep_aniso', not {self.uv_confidence!r}")

    @property
    def is_cascade(self) -> bool:
        """Whether the ROI heads cross-cascade (a mask or keypoint branch and a second stage)."""
        return self.cascade_mask or self.cascade_keypoints

    @property
    def chart_size(self) -> int:
        """Side S of the (R, C, S, S) chart outputs."""
        return self.pooler_resolution * CHART_OUTPUT_STRIDE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DensePoseError(f"unknown model config fields: {', '.join(unknown)}")
        return cls(**values)
