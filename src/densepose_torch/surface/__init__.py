"""The body surface behind the charts: DensePose's (I, U, V) placed on the SMPL mesh (the face,
barycentric coordinates and nearest SMPL vertex of every body pixel). docs/surface.md explains it."""
from .lookup import ChartLocator, SurfacePoints
from .maps import SmplSurface, SurfaceMaps, require_smpl_charts_of, surface_maps, vertex_colours
from .smpl import SmplCharts, find_uv_processed, load_smpl_charts

__all__ = [
    "ChartLocator", "SmplCharts", "SmplSurface", "SurfaceMaps", "SurfacePoints", "find_uv_processed", "load_smpl_charts",
    "require_smpl_charts_of", "surface_maps", "vertex_colours",
]
