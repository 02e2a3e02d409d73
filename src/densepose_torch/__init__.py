"""DensePose in plain PyTorch: dense human pose (body part and surface coordinates per pixel)
with detectron2's model zoo, without detectron2.

    from densepose_torch import load_model, Predictor
    predictor = Predictor(load_model("R_50_FPN_s1x"))
    result = predictor("photo.jpg")          # DensePoseResult: boxes, scores, per-person charts
    maps = result.to_dense()                 # full-image I, U, V and instance index
"""
from .checkpoint import load_model, save_checkpoint
from .config import ModelConfig
from .errors import DensePoseError
from .inference import Predictor
from .results import ChartResult, DenseMaps, DensePoseResult
from .zoo import ZOO, get_zoo_model

__version__ = "0.1.0"

__all__ = [
    "ChartResult",
    "DenseMaps",
    "DensePoseError",
    "DensePoseResult",
    "ModelConfig",
    "Predictor",
    "ZOO",
    "get_zoo_model",
    "load_model",
    "save_checkpoint",
]
