"""body_charts.npz and its builder (tools/body_charts): the file against its declaration, and the
builder's anny-free geometry on toy meshes.

Tolerances: maps that are exact in exact arithmetic (affine reproduction, arc-length placement,
PCA of exactly low-rank data) are checked to 1e-10 in coordinates of size ~1. They come out of
one sparse direct solve or one SVD of a small, well-conditioned problem (at most a few hundred
unknowns), whose rounding error is ~1e-14; 1e-10 leaves four orders of magnitude for other
BLAS/LAPACK builds while still catching any real bug, which shows up at 1e-3 or more.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from densepose_torch.definitions import (
    COARSE_PART_SYMMETRY,
    FINE_TO_COARSE,
    KEYPOINT_NAMES,
    NUM_PARTS,
    PART_SYMMETRY,
    PARTS,
)
from densepose_torch.errors import DensePoseError
from densepose_torch.synthetic.body import (
    BODY_CHARTS_ARRAYS,
    BODY_CHARTS_PATH,
    check_body_charts,
)
from densepose_torch.synthetic.poses import mirror_joint_name
from tools.body_charts.charts import CHARTED_PARTS
from tools.body_charts.mesh import (
    border_vertex_mask,
    boundary_loop,
    cyclic_runs,
    euler_characteristic,
    face_adjacency,
    unique_edges,
)
from tools.body_charts.output import declared_arrays
from tools.body_charts.parts import (
    joint_region,
    keep_largest_components,
    make_symmetric,
    region,
    region_limb,
    region_parts,
)
from tools.body_charts.shape_model import pca
from tools.body_charts.skeleton import (
    KEPT_JOINTS,
    kept_ancestor,
    kept_parents,
    merge_skinning,
    strongest_joints,
)
from tools.body_charts.uv_maps import (
    harmonic_map,
    mean_value_weights,
    square_boundary,
    stretch_minimised_map,
    triangle_stretch,
)

EXACT = 1e-10  # see the module docstring
SQUARE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


# --------------------------------------------------------------------------------------------
# toy meshes


def grid_faces(nu: int, nv: int) -> np.ndarray:
    """(2 (nu-1)(nv-1), 3) triangles of an nu x nv vertex grid (vertex i + nu j at column i, row
    j), counter-clockwise when columns go along +x and rows along +y."""
    idx = np.arange(nu * nv).reshape(nv, nu)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    return np.concatenate([np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)])


def flat_square(n: int = 7, jitter: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n*n, 3) vertices of the unit square in the plane z = 0 with uneven but straight rows and
    columns, interior vertices moved by up to `jitter` (<= 1) times a fifth of the narrowest
    cell (too little to fold a triangle); and its faces."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.5, 1.5, size=(2, n - 1))
    xs, ys = (np.concatenate([[0.0], np.cumsum(s)]) / s.sum() for s in steps)
    x, y = np.meshgrid(xs, ys)
    pos = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)
    interior = ((x > 0) & (x < 1) & (y > 0) & (y < 1)).ravel()
    narrowest = min(np.diff(xs).min(), np.diff(ys).min())
    pos[interior, :2] += rng.uniform(-jitter, jitter, size=(interior.sum(), 2)) * 0.2 * narrowest
    return pos, grid_faces(n, n)


def corner_indices(loop: np.ndarray, vertices: list[int]) -> list[int]:
    """Positions in `loop` of the given vertices."""
    return [int(np.flatnonzero(loop == v)[0]) for v in vertices]


# --------------------------------------------------------------------------------------------
# the committed file against the declaration


@pytest.fixture(scope="module")
def charts() -> dict[str, np.ndarray]:
    with np.load(BODY_CHARTS_PATH) as data:
        return {k: data[k] for k in data.files}


def test_committed_file_matches_its_declaration(charts):
    sizes = check_body_charts(charts, BODY_CHARTS_PATH)
    assert sizes["T"] == len(KEYPOINT_NAMES) and sizes["J"] == len(KEPT_JOINTS)
    # Members in the declared order: the builder writes them so (reproducible bytes).
    with zipfile.ZipFile(BODY_CHARTS_PATH) as archive:
        assert archive.namelist() == [f"{spec.key}.npy" for spec in BODY_CHARTS_ARRAYS]


def test_committed_file_indices_are_in_range(charts):
    sizes = check_body_charts(charts)
    for key, size in [("faces", "V"), ("mirror_vertex", "V"), ("chart_vertex", "V"), ("keypoint_vertex", "V"),
                      ("face_chart", "C"), ("skin_joints", "J"), ("keypoint_index", "T")]:
        assert charts[key].max() < sizes[size], key
    parents = charts["joint_parents"]
    assert parents[0] == -1 and (parents[1:] >= 0).all() and (parents[1:] < np.arange(1, sizes["J"])).all()
    for key in ("face_part", "chart_part"):
        assert charts[key].min() >= 1 and charts[key].max() <= NUM_PARTS, key
    assert tuple(charts["keypoint_names"]) == KEYPOINT_NAMES
    assert tuple(charts["joint_names"]) == KEPT_JOINTS


def test_committed_faces_face_outwards(charts):
    """Counter-clockwise seen from outside, as declared: the skin's signed volume is positive
    (eyeballs left out: closed pieces of their own)."""
    skin = ~charts["eye_vertex"][charts["faces"]].any(axis=1)
    p = charts["rest_vertices"].astype(np.float64)[charts["faces"][skin]]
    volume = np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6
    assert volume > 0.02  # m^3: a person's order of magnitude, not a rounding residue


@pytest.mark.parametrize("change", ["dtype", "missing", "extra", "size", "sum"])
def test_declaration_check_rejects(charts, change):
    bad = dict(charts)
    if change == "dtype":
        bad["faces"] = bad["faces"].astype(np.int64)
    elif change == "missing":
        del bad["chart_uv"]
    elif change == "extra":
        bad["notes"] = np.zeros(1)
    elif change == "size":
        bad["mirror_vertex"] = bad["mirror_vertex"][:-1]
    else:
        bad["shape_mean"] = bad["shape_mean"][:-1]  # V + J rows
    with pytest.raises(DensePoseError):
        check_body_charts(bad)


def test_builder_casts_to_the_declaration(charts):
    values = {k: v.astype(np.float64) if v.dtype.kind == "f" else v.astype(np.int64) if v.dtype.kind in "iu" else v
              for k, v in charts.items()}
    values["joint_names"] = list(values["joint_names"])
    out = declared_arrays(values)
    assert list(out) == [spec.key for spec in BODY_CHARTS_ARRAYS]
    for key in ("faces", "joint_names", "chart_part"):
        np.testing.assert_array_equal(out[key], charts[key])
        assert out[key].dtype == charts[key].dtype
    with pytest.raises(ValueError, match="does not fit"):
        declared_arrays({**values, "face_part": values["face_part"] + 250})  # over uint8
    with pytest.raises(ValueError, match="undeclared"):
        declared_arrays({**values, "notes": [1]})


# --------------------------------------------------------------------------------------------
# mesh topology


def test_boundary_loop_of_a_square_follows_the_faces():
    n = 5
    pos, faces = flat_square(n)
    loop = boundary_loop(faces)
    assert loop[0] == 0 and len(loop) == 4 * (n - 1)
    assert set(loop.tolist()) == set(np.flatnonzero(border_vertex_mask(faces, n * n)).tolist())
    # Consecutive loop vertices are directed edges of the faces (the faces' orientation) ...
    half = {tuple(e) for f in faces.tolist() for e in zip(f, f[1:] + f[:1])}
    assert all((int(a), int(b)) in half for a, b in zip(loop, np.roll(loop, -1)))
    # ... so for counter-clockwise faces the loop is counter-clockwise: positive shoelace area.
    x, y = pos[loop, 0], pos[loop, 1]
    assert 0.5 * (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() == pytest.approx(1.0, abs=EXACT)


def test_boundary_loop_rejects_what_is_not_a_disk():
    tube = grid_faces(6, 3)  # rows of 6 vertices; join the last column to the first
    tube = np.where(tube % 6 == 5, tube - 5, tube)
    tube = tube[np.array([len(set(f)) == 3 for f in tube.tolist()])]
    assert euler_characteristic(tube) == 0
    with pytest.raises(ValueError):
        boundary_loop(tube)  # two loops
    bowtie = np.array([[0, 1, 2], [0, 3, 4]])  # two triangles touching at vertex 0
    with pytest.raises(ValueError):
        boundary_loop(bowtie)


def test_euler_characteristic():
    assert euler_characteristic(grid_faces(4, 5)) == 1  # disk
    octahedron = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    assert euler_characteristic(octahedron) == 2  # sphere


def test_face_adjacency_pairs_faces_across_interior_edges():
    n = 5
    faces = grid_faces(n, n)
    fa, fb, eu, ev = face_adjacency(faces, n * n)
    assert len(fa) == len(unique_edges(faces)) - 4 * (n - 1)  # every edge but the border ones
    for a, b, u, v in zip(fa, fb, eu, ev):
        assert {u, v} <= set(faces[a]) and {u, v} <= set(faces[b]) and a != b


def test_cyclic_runs_wrap_around():
    assert cyclic_runs(np.array([1, 1, 2, 2, 2, 1])) == [(2, 3, 2), (5, 3, 1)]
    assert cyclic_runs(np.array([7, 7, 7])) == [(0, 3, 7)]


# --------------------------------------------------------------------------------------------
# disk parameterisation


def test_square_boundary_places_the_loop_by_arc_length():
    """A square with uneven (straight) sides goes onto the unit square exactly where it is."""
    n = 7
    pos, faces = flat_square(n)
    loop = boundary_loop(faces)
    corners = corner_indices(loop, [0, n - 1, n * n - 1, n * (n - 1)])
    uv = square_boundary(pos, loop, corners, SQUARE)
    np.testing.assert_allclose(uv, pos[loop, :2], atol=EXACT)


def test_harmonic_map_reproduces_affine_maps_on_a_flat_mesh():
    """Mean-value weights have linear precision: with the border placed by an affine map, every
    interior vertex lands where that affine map sends it, however uneven the triangles."""
    pos, faces = flat_square(7, jitter=0.8)
    loop = boundary_loop(faces)
    affine = np.array([[0.7, 0.2], [-0.1, 1.3]])
    target = pos[:, :2] @ affine.T + np.array([0.3, -0.4])
    uv = harmonic_map(mean_value_weights(pos, faces, len(pos)), loop, target[loop])
    np.testing.assert_allclose(uv, target, atol=EXACT)


def test_triangle_stretch_of_a_uniform_scaling():
    pos, faces = flat_square(5, jitter=0.8)
    sigma, area3d, area_uv = triangle_stretch(2.0 * pos, pos[:, :2], faces)
    np.testing.assert_allclose(sigma, 2.0, rtol=EXACT)
    np.testing.assert_allclose(area3d, 4.0 * area_uv, rtol=EXACT)
    assert (area_uv > 0).all()


def test_stretch_minimised_map_keeps_an_isometry():
    """A flat square (uneven triangles) onto itself: the identity has stretch 1 everywhere, so
    the reweighting leaves it alone."""
    n = 7
    pos, faces = flat_square(n, jitter=0.8)
    loop = boundary_loop(faces)
    corners = corner_indices(loop, [0, n - 1, n * n - 1, n * (n - 1)])
    uv = stretch_minimised_map(pos, faces, loop, square_boundary(pos, loop, corners, SQUARE))
    np.testing.assert_allclose(uv, pos[:, :2], atol=EXACT)


def test_stretch_minimised_map_unrolls_a_half_cylinder():
    """A half cylinder of circumference 1 and height 1 is a bent unit square; its map is the
    unrolling (exact here: the mesh is regular, so every row and column stays straight). The
    stretch is then the ratio chord / arc of a cell, known in closed form."""
    n = 9
    u, v = (g.ravel() for g in np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n)))
    r = 1.0 / np.pi
    pos = np.stack([-r * np.cos(np.pi * u), r * np.sin(np.pi * u), v], axis=1)
    faces = grid_faces(n, n)
    loop = boundary_loop(faces)
    corners = corner_indices(loop, [0, n - 1, n * n - 1, n * (n - 1)])
    uv = stretch_minimised_map(pos, faces, loop, square_boundary(pos, loop, corners, SQUARE))
    np.testing.assert_allclose(uv, np.stack([u, v], axis=1), atol=EXACT)
    chord = 2 * r * np.sin(np.pi / (2 * (n - 1))) * (n - 1)  # U stretch; V is 1
    sigma, _, _ = triangle_stretch(pos, uv, faces)
    np.testing.assert_allclose(sigma, np.sqrt(0.5 * (chord ** 2 + 1.0)), rtol=EXACT)


def test_stretch_minimised_map_of_a_bump_is_one_to_one_and_no_worse_than_harmonic():
    """A bumpy, unevenly meshed patch: the map stays inside the square without folds, and its
    area-weighted stretch is below the plain harmonic map's (the iteration starts from it and
    keeps the best iterate; on this patch 1.187 -> 1.170, so a margin of 0.005 tests that the
    reweighting helps and is far above rounding)."""
    n = 11
    pos, faces = flat_square(n, jitter=0.8, seed=3)
    pos[:, 2] = 0.4 * np.sin(np.pi * pos[:, 0]) * np.sin(np.pi * pos[:, 1])
    loop = boundary_loop(faces)
    corners = corner_indices(loop, [0, n - 1, n * n - 1, n * (n - 1)])
    boundary_uv = square_boundary(pos, loop, corners, SQUARE)

    def l2_stretch(uv):
        sigma, area3d, area_uv = triangle_stretch(pos, uv, faces)
        assert (area_uv > 0).all()  # no fold, same orientation as the faces
        return np.sqrt((sigma ** 2 * area3d).sum() / area3d.sum())

    harmonic = harmonic_map(mean_value_weights(pos, faces, len(pos)), loop, boundary_uv)
    uv = stretch_minimised_map(pos, faces, loop, boundary_uv)
    assert uv.min() >= -EXACT and uv.max() <= 1 + EXACT
    assert l2_stretch(uv) < l2_stretch(harmonic) - 0.005


# --------------------------------------------------------------------------------------------
# parts: the regions are DensePose's coarse parts


def test_regions_and_halves_come_from_the_part_table():
    assert region_parts(region("upper leg", "R")) == {"back": 7, "front": 9}
    assert region_parts(region("lower arm", "L")) == {"front": 19, "back": 21}
    assert region_parts(region("head")) == {"right": 23, "left": 24}
    assert region_parts(region("hand", "R")) == {"": 3}
    assert region_limb(region("upper arm", "L")) == ("upper arm", "L")
    halves = [p for r in range(1, 15) for p in region_parts(r).values()]
    assert sorted(halves) == list(PARTS)
    for p in PARTS:
        assert p in region_parts(int(FINE_TO_COARSE[p])).values()


def test_every_kept_joint_votes_for_the_mirror_region_of_its_mirror():
    for name in KEPT_JOINTS:
        assert joint_region(mirror_joint_name(name)) == COARSE_PART_SYMMETRY[joint_region(name)], name


def test_charted_parts_and_their_mirrors_cover_every_part():
    mirrors = {PART_SYMMETRY[p] for p in CHARTED_PARTS}
    assert set(CHARTED_PARTS) | mirrors == set(PARTS)
    assert all(PART_SYMMETRY[p] == p or PART_SYMMETRY[p] not in CHARTED_PARTS for p in CHARTED_PARTS)


def symmetric_strip(m: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (2m+1) x 3 vertex strip over x in [-1, 1] triangulated mirror-symmetrically: vertices
    (V, 3), faces (F, 3) and the mirror map (V,) x -> -x."""
    nu, nv = 2 * m + 1, 3
    x, y = np.meshgrid(np.linspace(-1, 1, nu), np.linspace(0, 1, nv))
    pos = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    column, row = np.arange(x.size) % nu, np.arange(x.size) // nu
    mirror = row * nu + (nu - 1 - column)
    half = grid_faces(nu, nv)
    half = half[(column[half] <= m).all(axis=1)]  # the x <= 0 side
    return pos, np.concatenate([half, mirror[half][:, ::-1]]), mirror


def test_make_symmetric_copies_the_right_half_mirrored():
    pos, faces, mirror = symmetric_strip()
    rng = np.random.default_rng(0)
    part = rng.integers(1, NUM_PARTS + 1, size=len(faces))
    centroid = pos[faces].mean(axis=1)
    out = make_symmetric(part, faces, mirror, centroid)
    right = centroid[:, 0] < 0
    np.testing.assert_array_equal(out[right], part[right])
    np.testing.assert_array_equal(out[len(faces) // 2:], np.array(PART_SYMMETRY)[part[: len(faces) // 2]])


def test_keep_largest_components_absorbs_islands():
    n = 6
    faces = grid_faces(n, n)
    cells = (n - 1) ** 2

    def cell(row: int, col: int) -> list[int]:
        """The two faces of a grid cell (grid_faces lists all first triangles, then all second)."""
        return [row * (n - 1) + col, row * (n - 1) + col + cells]

    fa, fb, _, _ = face_adjacency(faces, n * n)
    label = np.ones(len(faces), dtype=np.int64)
    label[cell(0, 0)] = 2  # an island of label 2 in a corner ...
    label[cell(3, 2) + cell(3, 3) + cell(2, 2)] = 2  # ... and label 2's main piece
    out = keep_largest_components(label, 3, fa, fb, np.ones(len(fa)), skip=np.zeros(len(faces), dtype=bool))
    assert (out[cell(0, 0)] == 1).all()
    np.testing.assert_array_equal(np.flatnonzero(out == 2), sorted(cell(3, 2) + cell(3, 3) + cell(2, 2)))


# --------------------------------------------------------------------------------------------
# skeleton and shape space


def test_bones_merge_into_their_nearest_kept_ancestor():
    labels = ["root", "spine05", "spine05-twist", "upperarm01.L", "helper"]
    parents = [-1, 0, 1, 2, 3]
    kept = ("root", "spine05", "upperarm01.L")
    np.testing.assert_array_equal(kept_ancestor(labels, parents, kept), [0, 1, 1, 2, 2])
    assert kept_parents(labels, parents, kept) == [-1, 0, 1]
    weights = merge_skinning(np.array([[2, 1], [4, 3]]), np.array([[0.25, 0.75], [0.5, 0.5]]),
                             kept_ancestor(labels, parents, kept), len(kept))
    np.testing.assert_array_equal(weights, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_strongest_joints_renormalise_and_break_ties_by_index():
    joints, weights, lost = strongest_joints(np.array([[0.1, 0.5, 0.4], [0.4, 0.2, 0.4]]), count=2)
    np.testing.assert_array_equal(joints, [[1, 2], [0, 2]])
    np.testing.assert_allclose(weights, [[5 / 9, 4 / 9], [0.5, 0.5]], atol=EXACT)
    assert lost == pytest.approx(0.2)


def test_pca_of_low_rank_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 9)) + rng.normal(size=9)
    mean, basis, coeffs = pca(x, 2)
    np.testing.assert_allclose(mean + coeffs @ basis, x, atol=EXACT)
    np.testing.assert_allclose(coeffs.mean(axis=0), 0.0, atol=EXACT)
    np.testing.assert_allclose(coeffs.T @ coeffs / len(x), np.eye(2), atol=EXACT)  # unit variance, uncorrelated
