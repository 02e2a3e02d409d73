"""Speed of the SMPL lookup (densepose_torch.surface): every pixel of a full IUV map placed on SMPL.

    python benchmarks/bench_surface.py --size 1024

Three maps of size x size, every pixel on the body (the worst case; a photo's people cover a part of
it): points drawn inside the charts' faces (what a good model predicts), uniform U, V (a fifth to a
third fall in the charts' gaps and take the nearest vertex), and the same with the picture of the
`smpl` render. Printed: the one-off cost of loading UV_Processed.mat and building the index, and
the median of 5 runs of each map (seconds; pixels per second).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from densepose_torch.render.surface import smpl_vertices
from densepose_torch.results import ChartResult, DenseMaps, DensePoseResult
from densepose_torch.surface import ChartLocator, SmplSurface, load_smpl_charts, surface_maps, vertex_colours


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="map side in pixels (default 1024)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    charts = load_smpl_charts()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    locator = ChartLocator(charts)
    built = time.perf_counter() - started
    started = time.perf_counter()
    vertex_colours(charts)
    coloured = time.perf_counter() - started
    print(f"load UV_Processed.mat {loaded:.3f} s, build the index {built:.3f} s, vertex colours {coloured:.3f} s")

    rng = np.random.default_rng(0)
    count = args.size * args.size
    faces = rng.integers(0, len(charts.faces), count)
    weights = rng.dirichlet([1.0, 1.0, 1.0], count)
    on_charts = (charts.uv[charts.faces[faces]] * weights[:, :, None]).sum(axis=1)
    shape = (args.size, args.size)
    maps = {
        "on the charts": DenseMaps(charts.face_part[faces].reshape(shape).astype(np.uint8), on_charts[:, 0].reshape(shape).astype(np.float32),
                                   on_charts[:, 1].reshape(shape).astype(np.float32), np.ones(shape, np.uint16)),
        "uniform U, V": DenseMaps(rng.integers(1, 25, shape).astype(np.uint8), rng.random(shape, np.float32),
                                  rng.random(shape, np.float32), np.ones(shape, np.uint16)),
    }
    print(f"| {args.size}x{args.size} map, all body | seconds | million pixels per second | outside the charts |")
    print("|---|---|---|---|")
    for name, dense in maps.items():
        seconds = timed(lambda: surface_maps(dense, locator), args.repeats)
        outside = 1 - surface_maps(dense, locator).inside.mean()
        print(f"| {name} | {seconds:.3f} | {count / seconds / 1e6:.2f} | {outside:.1%} |", flush=True)
    surface = SmplSurface()
    surface.locator, surface.colours  # built before timing
    result = _whole_image_result(maps["on the charts"])
    image = np.zeros((*shape, 3), np.uint8)
    seconds = timed(lambda: smpl_vertices(image, result, surface), args.repeats)
    print(f"| `smpl` render of the first | {seconds:.3f} | {count / seconds / 1e6:.2f} | |")
    return 0


def _whole_image_result(dense: DenseMaps) -> DensePoseResult:
    """One detection covering the whole map, whose chart is the map."""
    height, width = dense.I.shape
    chart = ChartResult(0, 0, dense.I, np.stack([dense.U, dense.V]))
    return DensePoseResult((height, width), np.array([[0, 0, width, height]], np.float32), np.array([1.0], np.float32), [chart])


if __name__ == "__main__":
    sys.exit(main())
