"""The network: backbone (ResNet + FPN), proposal generator (RPN) and ROI heads (box + DensePose)."""
from .densepose_heads import ChartOutputs
from .densepose_rcnn import DensePoseRCNN, RawDetections, build_model

__all__ = ["ChartOutputs", "DensePoseRCNN", "RawDetections", "build_model"]
