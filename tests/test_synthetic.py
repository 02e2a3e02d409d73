"""The synthetic data engine: body charts, symmetry, GPS surface, scenes, DensePose-COCO output."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from densepose_torch.definitions import COARSE_PART_SYMMETRY, FINE_TO_COARSE, PART_SYMMETRY
from densepose_torch.errors import DensePoseError
from densepose_torch.synthetic import (
    AnnySurface,
    SceneGenerator,
    SynthJob,
    flip_iuv,
    load_body,
    read_dense,
    uv_symmetry_tables,
    write_dataset,
)
from densepose_torch.synthetic.body import joint_frames
from densepose_torch.synthetic.coco import min_dp_pixels
from densepose_torch.synthetic.poses import JOINT_LIMITS, POSE_FAMILIES, sample_pose
from densepose_torch.synthetic.raster import rasterize

SIZE = 128  # small images keep the file fast; the geometry is the same at any size

# DensePose's fine-to-coarse part table (detectron2's), written out independently of definitions.py
EXPECTED_FINE_TO_COARSE = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 6, 10: 7, 11: 8, 12: 9, 13: 8, 14: 9,
                       15: 10, 16: 11, 17: 10, 18: 11, 19: 12, 20: 13, 21: 12, 22: 13, 23: 14, 24: 14}


@pytest.fixture(scope="module")
def body():
    return load_body()


@pytest.fixture(scope="module")
def generator(body):
    return SceneGenerator(size=SIZE, body=body)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = write_dataset(SynthJob(out=out, seed=11, size=SIZE), count=4, progress=False)
    return out, summary


def _skin_faces(body, part):
    return np.flatnonzero((body.face_part == part) & ~body.eye_vertex[body.faces].any(axis=1))


# ---------------------------------------------------------------------------------------------
# parts and charts


def test_part_tables_match_densepose():
    assert {i: int(FINE_TO_COARSE[i]) for i in range(1, 25)} == EXPECTED_FINE_TO_COARSE
    assert [PART_SYMMETRY[PART_SYMMETRY[i]] for i in range(25)] == list(range(25))
    # flipping then coarsening equals coarsening then flipping the coarse label
    for i in range(25):
        assert FINE_TO_COARSE[PART_SYMMETRY[i]] == COARSE_PART_SYMMETRY[FINE_TO_COARSE[i]]


def test_every_face_belongs_to_a_part_with_a_chart(body):
    assert set(np.unique(body.face_part).tolist()) == set(range(1, 25))
    assert body.chart_uv.min() >= 0.0 and body.chart_uv.max() <= 1.0
    # a face's three corners are chart vertices of the face's own part and vertices
    assert (body.chart_part[body.face_chart] == body.face_part[:, None]).all()
    assert (body.chart_vertex[body.face_chart] == body.faces).all()


def test_charts_are_continuous_inside_each_part(body):
    """One UV per (vertex, part): faces of a part that share a vertex share its UV, so each
    chart is a continuous piecewise-linear map."""
    key = body.chart_vertex.astype(np.int64) * 25 + body.chart_part
    assert np.unique(key).size == key.size


def test_charts_do_not_fold_and_cover_the_square(body):
    uv = body.face_uv.astype(np.float64)
    for part in range(1, 25):
        tri = uv[_skin_faces(body, part)]
        area = 0.5 * ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                      - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
        sign = np.sign(area.sum())
        # Flat triangles (all corners on one side of the square) have area 0 up to rounding.
        assert (area * sign > -1e-9).all(), f"part {part} has folded triangles"
        assert abs(np.abs(area).sum() - 1.0) < 1e-3, f"part {part} overlaps itself or leaves gaps"
        grid = 64
        screen = np.concatenate([tri.reshape(-1, 2) * grid, np.ones((tri.size // 2, 1))], axis=1)
        hit = rasterize(screen, np.arange(len(screen)).reshape(-1, 3), grid, grid, cull_backfaces=False).face >= 0
        # Every cell centre of a 64x64 grid lies in some triangle (the charts fill the square).
        assert hit.mean() > 0.99, f"part {part} covers {hit.mean():.3f} of the square"


@pytest.mark.parametrize("parts, low, high, share", [
    # Torso and limbs are half-cylinders mapped to squares: near-isometric up to a per-part scale.
    ((1, 2, *range(7, 23)), 0.3, 4.0, 0.98),
    # Head, hands and feet have their whole neck/wrist/ankle opening on the square's border, so
    # they stretch more near it (measured 5th..95th percentiles: 0.29..8.6 for the hands).
    ((3, 4, 5, 6, 23, 24), 0.2, 10.0, 0.9),
])
def test_chart_distortion_is_bounded(body, parts, low, high, share):
    """UV edge length / 3D edge length, normalised by the part's overall scale (1 = isometric)."""
    rest = body.rest_vertices.astype(np.float64)
    uv = body.face_uv.astype(np.float64)
    for part in parts:
        sel = _skin_faces(body, part)
        f, t = body.faces[sel], uv[sel]
        area3d = 0.5 * np.linalg.norm(np.cross(rest[f[:, 1]] - rest[f[:, 0]], rest[f[:, 2]] - rest[f[:, 0]]), axis=1).sum()
        ratios = np.concatenate([
            np.linalg.norm(t[:, k] - t[:, (k + 1) % 3], axis=1) * np.sqrt(area3d)
            / np.linalg.norm(rest[f[:, k]] - rest[f[:, (k + 1) % 3]], axis=1) for k in range(3)])
        inside = ((ratios >= low) & (ratios <= high)).mean()
        assert inside >= share, f"part {part}: only {inside:.3f} of edges within [{low}, {high}]"


def test_left_charts_mirror_right_charts(body):
    """(vertex v, part p, U, V) on the body has its mirror image at (mirror(v), PART_SYMMETRY[p])
    with the UV that flip_iuv predicts, exactly: the flip tables describe this mesh."""
    key = body.chart_vertex.astype(np.int64) * 25 + body.chart_part
    order = np.argsort(key)
    flipped_part, u, v = flip_iuv(body.chart_part, body.chart_uv[:, 0], body.chart_uv[:, 1])
    mirror_key = body.mirror_vertex[body.chart_vertex] * 25 + flipped_part
    pos = order[np.searchsorted(key[order], mirror_key)]
    assert (key[pos] == mirror_key).all()
    np.testing.assert_allclose(body.chart_uv[pos], np.stack([u, v], axis=1), atol=1e-6)
    # ... and the rest shape is mirror-symmetric too
    np.testing.assert_allclose(body.rest_vertices[body.mirror_vertex] * [-1, 1, 1], body.rest_vertices, atol=1e-6)


def test_symmetry_is_an_involution():
    rng = np.random.default_rng(0)
    parts = rng.integers(1, 25, 2000)
    u, v = rng.random(2000).astype(np.float32), rng.random(2000).astype(np.float32)
    p1, u1, v1 = flip_iuv(parts, u, v)
    p2, u2, v2 = flip_iuv(p1, u1, v1)
    assert (p2 == parts).all() and np.array_equal(u2, u)
    np.testing.assert_allclose(v2, v, atol=1e-6)  # 1 - (1 - v) in float32
    # The DensePose-style 256x256 tables: lookups truncate to a bin and return the bin centre,
    # so two flips land within one bin (1/255) of the start.
    ut, vt = uv_symmetry_tables()
    assert ut.shape == vt.shape == (24, 256, 256)

    def table_flip(p, uu, vv):
        i, j = (vv * 255).astype(int), (uu * 255).astype(int)
        return np.asarray(PART_SYMMETRY)[p], ut[p - 1, i, j], vt[p - 1, i, j]

    q1, a1, b1 = table_flip(parts, u, v)
    q2, a2, b2 = table_flip(q1, a1, b1)
    assert (q2 == parts).all()
    assert np.abs(a2 - u).max() <= 1 / 255 + 1e-6 and np.abs(b2 - v).max() <= 1 / 255 + 1e-6
    # tables and exact flip agree to within half a bin
    assert np.abs(a1 - u1).max() <= 0.5 / 255 + 1e-6 and np.abs(b1 - v1).max() <= 0.5 / 255 + 1e-6


# ---------------------------------------------------------------------------------------------
# skeleton


def test_mirrored_angles_give_a_mirrored_pose(body):
    """Joint frames and angles are defined so that mirrored angles pose the symmetric rest body
    into its mirror image (tolerance 0.5 mm: per-vertex skinning keeps 6 joints, renormalised)."""
    names = body.joint_names
    shape = np.concatenate([body.rest_vertices, _symmetric_joints(body)]).astype(np.float64)
    rng = np.random.default_rng(1)
    angles = np.radians(rng.uniform(-30, 30, size=(len(names), 3)))
    swap = np.array([names.index(n[:-2] + (".R" if n.endswith(".L") else ".L")) if n[-2:] in (".L", ".R")
                     else i for i, n in enumerate(names)])
    mirrored = angles[swap]
    mirrored[[i for i, n in enumerate(names) if "." not in n], 1:] *= -1  # trunk: bend and twist flip
    a, _ = body.pose(shape, angles, np.eye(3), np.zeros(3))
    b, _ = body.pose(shape, mirrored, np.eye(3), np.zeros(3))
    np.testing.assert_allclose(b[body.mirror_vertex] * [-1, 1, 1], a, atol=5e-4)


def _symmetric_joints(body):
    joints = body.shape_mean[body.n_vertices:].astype(np.float64)
    names = body.joint_names
    swap = [names.index(n[:-2] + (".R" if n.endswith(".L") else ".L")) if n[-2:] in (".L", ".R") else i
            for i, n in enumerate(names)]
    return 0.5 * (joints + joints[swap] * [-1, 1, 1])


def test_sampled_poses_respect_joint_limits(body):
    rng = np.random.default_rng(4)
    names = body.joint_names
    limits = np.radians([JOINT_LIMITS[_limit_key(n)] for n in names])  # (J, 3, 2)
    for family in POSE_FAMILIES:
        for _ in range(5):
            angles = sample_pose(rng, names, family)
            assert ((angles >= limits[..., 0] - 1e-9) & (angles <= limits[..., 1] + 1e-9)).all(), family


def _limit_key(name):
    base = name.partition(".")[0]
    return "thumb" if base.startswith("finger1-") else "finger" if base.startswith("finger") else base


def test_vertex_charts_pick_one_of_the_vertex_parts(body):
    part, u, v = body.vertex_charts()
    assert part.shape == u.shape == v.shape == (body.n_vertices,)
    member = set(zip(body.chart_vertex.tolist(), body.chart_part.tolist()))
    assert all((i, int(p)) in member for i, p in enumerate(part))
    assert 0 <= u.min() and u.max() <= 1 and 0 <= v.min() and v.max() <= 1


def test_joint_frames_are_orthonormal(body):
    frames = joint_frames(body.joint_names, body.shape_mean[body.n_vertices:].astype(np.float64))
    np.testing.assert_allclose(frames @ frames.transpose(0, 2, 1), np.broadcast_to(np.eye(3), frames.shape), atol=1e-9)


def test_keypoint_names_follow_the_persons_sides(body):
    """anny's 'left_*' keypoints sit on the body's left (+X), 'right_*' on its right."""
    kp = body.keypoints(body.rest_vertices)
    for k, name in enumerate(body.keypoint_names):
        if name.startswith("left_"):
            assert kp[k, 0] > 0.02, name
        if name.startswith("right_"):
            assert kp[k, 0] < -0.02, name
    assert kp[body.keypoint_names.index("nose"), 2] > kp[body.keypoint_names.index("left_shoulder"), 2]


# ---------------------------------------------------------------------------------------------
# GPS surface


@pytest.fixture(scope="module")
def surface(body):
    return AnnySurface(body)


def test_nearest_vertex_lies_in_the_queried_part(body, surface):
    rng = np.random.default_rng(2)
    parts = rng.integers(0, 25, 500)
    u, v = rng.random(500), rng.random(500)
    nearest = surface.nearest_vertices(parts, u, v)
    assert (nearest[parts == 0] == -1).all()
    on = parts > 0
    member = set(zip(body.chart_vertex.tolist(), body.chart_part.tolist()))
    assert all((int(n), int(p)) in member for n, p in zip(nearest[on], parts[on]))
    assert not body.eye_vertex[nearest[on]].any()
    # a chart vertex's own (part, U, V) finds a vertex at the same place
    pick = rng.choice(np.flatnonzero(~body.eye_vertex[body.chart_vertex]), 200, replace=False)
    found = surface.nearest_vertices(body.chart_part[pick], body.chart_uv[pick, 0], body.chart_uv[pick, 1])
    assert surface.geodesic_distances(found, body.chart_vertex[pick]).max() < 0.01


def test_geodesic_distances_are_a_metric_above_euclidean(body, surface):
    rng = np.random.default_rng(3)
    skin = np.flatnonzero(~body.eye_vertex)
    pts = rng.choice(skin, 25, replace=False)
    a, b = np.meshgrid(pts, pts, indexing="ij")
    d = surface.geodesic_distances(a.ravel(), b.ravel()).reshape(a.shape)
    # rows are stored as float32: 1e-5 m covers their rounding on distances up to ~2 m
    tol = 1e-5
    np.testing.assert_allclose(d, d.T, atol=tol)
    assert (np.diag(d) == 0).all()
    euclid = np.linalg.norm(body.rest_vertices[a] - body.rest_vertices[b], axis=-1)
    assert (d >= euclid - tol).all()
    assert (d[~np.eye(len(pts), dtype=bool)] > 0).all()
    for i in range(len(pts)):  # triangle inequality d(i, k) <= d(i, j) + d(j, k)
        assert (d[i][None, :] <= d[i][:, None] + d + tol).all()
    assert 1.2 < surface.distance_row(int(skin[0]))[skin].max() < 2.5  # head to toe, metres


# ---------------------------------------------------------------------------------------------
# scenes


def test_render_is_deterministic_and_consistent(generator):
    a, b = generator.render(5), generator.render(5)
    for name in ("image", "I", "U", "V", "instance", "keypoints"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.image, generator.render(6).image)
    assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
    fg = a.I > 0
    assert np.array_equal(fg, a.instance > 0)
    assert (a.U[~fg] == 0).all() and (a.V[~fg] == 0).all()
    assert 0 <= a.U.min() and a.U.max() <= 1 and 0 <= a.V.min() and a.V.max() <= 1
    assert set(np.unique(a.instance[fg]).tolist()) == set(range(1, a.num_persons + 1))
    assert a.keypoints.shape == (a.num_persons, 17, 3)
    assert np.isin(a.keypoints[:, :, 2], (0, 1, 2)).all()


def test_scenes_vary_in_people_and_parts(generator):
    counts, parts = [], set()
    for seed in range(12):
        scene = generator.render(seed)
        counts.append(scene.num_persons)
        parts |= set(np.unique(scene.I).tolist())
    assert min(counts) >= 1 and max(counts) >= 3
    assert parts == set(range(25))


def test_background_folder_is_used(tmp_path, body):
    folder = tmp_path / "bg"
    folder.mkdir()
    import cv2

    for k in range(2):
        cv2.imwrite(str(folder / f"b{k}.png"), np.full((40, 60, 3), 60 + 100 * k, np.uint8))
    with_bg = SceneGenerator(size=64, backgrounds=folder, body=body)
    scenes = [with_bg.render(s) for s in range(8)]
    flat = [s for s in scenes if np.ptp(s.image[s.I == 0].astype(int), axis=0).max() < 40]
    assert flat, "no scene used the (flat grey) background pictures"
    with pytest.raises(DensePoseError):
        SceneGenerator(size=64, backgrounds=tmp_path / "missing", body=body)


# ---------------------------------------------------------------------------------------------
# DensePose-COCO output


def test_dataset_loads_with_pycocotools_and_matches_dense_maps(dataset):
    out, summary = dataset
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 4 and summary["persons_with_points"] > 0
    assert coco.loadCats(1)[0]["keypoints"][0] == "nose" and len(coco.loadCats(1)[0]["skeleton"]) == 19
    threshold = min_dp_pixels(SIZE, SIZE)
    for image in coco.loadImgs(coco.getImgIds()):
        assert (out / "images" / image["file_name"]).is_file()
        dense = read_dense(out / "dense" / (image["file_name"][:-4] + ".npz"))
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            mask = dense.instance == ann["instance_id"]
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["area"] == mask.sum() and ann["iscrowd"] == 0 and ann["category_id"] == 1
            x, y, w, h = ann["bbox"]
            rows, cols = np.nonzero(mask)
            assert (x, y, w, h) == (cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1)
            kp = np.array(ann["keypoints"]).reshape(17, 3)
            assert ann["num_keypoints"] == (kp[:, 2] > 0).sum()
            assert ("dp_x" in ann) == (mask.sum() >= threshold)
            if "dp_x" in ann:
                _check_points(ann, dense)


def _check_points(ann, dense):
    x, y, w, h = ann["bbox"]
    n = len(ann["dp_x"])
    assert all(len(ann[k]) == n for k in ("dp_y", "dp_I", "dp_U", "dp_V")) and 80 <= n <= 130
    # training maps points back with x0 + dp_x * w / 256; they land on pixel centres
    px = x + np.array(ann["dp_x"]) * w / 256
    py = y + np.array(ann["dp_y"]) * h / 256
    cols, rows = np.floor(px).astype(int), np.floor(py).astype(int)
    np.testing.assert_allclose(px - cols, 0.5, atol=1e-3)
    assert (dense.instance[rows, cols] == ann["instance_id"]).all()
    assert np.array_equal(dense.I[rows, cols], ann["dp_I"])
    # U, V are written with 6 decimals from the stored uint16 maps
    np.testing.assert_allclose(dense.U[rows, cols], ann["dp_U"], atol=1e-6)
    np.testing.assert_allclose(dense.V[rows, cols], ann["dp_V"], atol=1e-6)
    # every part with a fair share of the person gets points
    visible, counts = np.unique(dense.I[dense.instance == ann["instance_id"]], return_counts=True)
    assert set(visible[counts >= 0.02 * counts.sum()].tolist()) <= set(ann["dp_I"])
    # dp_masks: 14 coarse parts on 256x256, [] when absent, consistent with the points
    assert len(ann["dp_masks"]) == 14
    coarse = np.zeros((256, 256), np.int64)
    for k, rle in enumerate(ann["dp_masks"]):
        if rle:
            assert rle["size"] == [256, 256]
            coarse[mask_utils.decode(rle).astype(bool)] = k + 1
    present = {int(FINE_TO_COARSE[i]) for i in ann["dp_I"]}
    assert present <= set(np.unique(coarse).tolist())
    hits = coarse[np.clip(np.array(ann["dp_y"]).astype(int), 0, 255), np.clip(np.array(ann["dp_x"]).astype(int), 0, 255)]
    # nearest-neighbour resampling can move a boundary point into the next part; most agree
    assert (hits == FINE_TO_COARSE[ann["dp_I"]]).mean() > 0.8


def test_rerun_resumes_and_gives_identical_bytes(dataset, tmp_path):
    out, _ = dataset
    first = (out / "annotations.json").read_bytes()
    image = (out / "images" / "000002.jpg").read_bytes()
    dense = (out / "dense" / "000002.npz").read_bytes()
    (out / "dense" / "000002.npz").unlink()
    (out / "annotations.json").unlink()
    summary = write_dataset(SynthJob(out=out, seed=11, size=SIZE), count=4, progress=False)
    assert summary["rendered"] == 1
    assert (out / "annotations.json").read_bytes() == first
    assert (out / "images" / "000002.jpg").read_bytes() == image
    assert (out / "dense" / "000002.npz").read_bytes() == dense
    # the same settings elsewhere, two processes, give the same files
    other = tmp_path / "again"
    write_dataset(SynthJob(out=other, seed=11, size=SIZE), count=4, progress=False, workers=2)
    for name in ("annotations.json", "images/000000.jpg", "images/000003.jpg", "dense/000001.npz"):
        assert (other / name).read_bytes() == (out / name).read_bytes(), name
    with pytest.raises(DensePoseError, match="other settings"):
        write_dataset(SynthJob(out=out, seed=12, size=SIZE), count=4, progress=False)


def test_overwrite_and_extend(tmp_path):
    out = tmp_path / "d"
    write_dataset(SynthJob(out=out, seed=1, size=64), count=2, progress=False)
    summary = write_dataset(SynthJob(out=out, seed=1, size=64), count=3, progress=False)
    assert summary["rendered"] == 1 and len(json.loads((out / "annotations.json").read_text())["images"]) == 3
    summary = write_dataset(SynthJob(out=out, seed=2, size=64), count=2, progress=False, overwrite=True)
    assert summary["rendered"] == 2 and not (out / "images" / "000002.jpg").exists()


def test_cli_synth(tmp_path, capsys):
    from densepose_torch.cli import synth

    parser = argparse.ArgumentParser(prog="densepose")
    synth.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--count", "1", "--out", str(tmp_path / "c"), "--size", "48", "--workers", "1"])
    assert args.handler(args) == 0
    assert "1 images" in capsys.readouterr().out
    COCO(str(tmp_path / "c" / "annotations.json"))
    bad = parser.parse_args(["synth", "--count", "1", "--out", str(tmp_path / "c"), "--backgrounds", str(tmp_path / "nope")])
    with pytest.raises(DensePoseError, match="no such background folder"):
        bad.handler(bad)
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--count", "0", "--out", str(tmp_path / "c")])
    close = parser.parse_args(["synth", "--count", "1", "--out", str(tmp_path / "close"), "--size", "48", "--workers", "1", "--person-height", "1.5", "2"])
    assert close.handler(close) == 0
    assert json.loads((tmp_path / "close" / "synth_config.json").read_text())["person_height"] == [1.5, 2.0]
    for wrong in (["--person-height", "2", "1"], ["--person-height", "1", "2", "--video"]):
        bad = parser.parse_args(["synth", "--count", "1", "--out", str(tmp_path / "x"), "--size", "48", *wrong])
        with pytest.raises(DensePoseError, match="person.height"):
            bad.handler(bad)
    empty = parser.parse_args(["synth", "--count", "2", "--out", str(tmp_path / "empty"), "--size", "48", "--workers", "1", "--empty-share", "1"])
    assert empty.handler(empty) == 0
    assert json.loads((tmp_path / "empty" / "synth_config.json").read_text())["empty_share"] == 1.0
    assert "0 people" in capsys.readouterr().out
    for wrong in (["--empty-share", "1.5"], ["--empty-share", "0.5", "--video"]):
        bad = parser.parse_args(["synth", "--count", "1", "--out", str(tmp_path / "x"), "--size", "48", *wrong])
        with pytest.raises(DensePoseError, match="empty"):
            bad.handler(bad)
