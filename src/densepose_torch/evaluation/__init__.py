"""DensePose-COCO evaluation: GPS, GPSm and IOU AP/AR exactly as detectron2's official
evaluator computes them, plus COCO box AP.

    from densepose_torch.evaluation import evaluate, load_official_surface
    metrics = evaluate("densepose_minival2014.json", "results.json", load_official_surface("dp_data/"))
    metrics["gps"]["AP"]
"""
from .evaluator import MODES, evaluate
from .ground_truth import GroundTruth, load_ground_truth, points_to_annotation
from .official_data import download_official_data, load_official_surface, official_data_dir
from .surface import BodySurface
from .vertex_surfaces import ChartVertices, DenseGeodesicSurface, SmplGeodesicSurface

__all__ = [
    "MODES",
    "BodySurface",
    "ChartVertices",
    "DenseGeodesicSurface",
    "GroundTruth",
    "SmplGeodesicSurface",
    "download_official_data",
    "evaluate",
    "load_ground_truth",
    "load_official_surface",
    "official_data_dir",
    "points_to_annotation",
]
