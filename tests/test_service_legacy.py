"""`POST /densepose`, the path-based endpoint of the seed project: the file rule, and that no
path outside --data-root is ever read or written (`..`, absolute paths, symbolic links)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densepose_torch.render import viton
from densepose_torch.service.app import create_app
from densepose_torch.service.settings import DEFAULT_MIN_SCORE, ServiceSettings

from .test_service import assert_one_line_error, photo, started, tiny_predictor  # noqa: F401 - fixtures

# JPEG (quality 95) of a flat-coloured render: mean error stays well below 2 grey levels.
JPEG_MEAN_TOLERANCE = 2.0


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.fixture
def layout(tmp_path, photo):  # noqa: F811 - the imported fixture
    """root/ (the data root) with image/GM/00009.jpg, and outside/ next to it with a photo."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "image" / "GM").mkdir(parents=True)
    outside.mkdir()
    Image.fromarray(photo).save(root / "image" / "GM" / "00009.jpg", quality=95)
    Image.fromarray(photo).save(outside / "secret.jpg", quality=95)
    return root, outside


@pytest.fixture
def client(layout, tiny_predictor):  # noqa: F811
    root, _ = layout
    with started(create_app(ServiceSettings(data_root=root), lambda: tiny_predictor)) as client:
        yield client


def body(image_path="image/GM", file_name="00009", dense_root="image-densepose", client_id="GM"):
    return {"DenseRootDir": dense_root, "ClientID": client_id, "FileName": file_name, "ImagePath": image_path}


def test_writes_the_viton_render_where_the_seed_did(client, layout, tiny_predictor):  # noqa: F811
    root, _ = layout
    response = client.post("/densepose", json=body())
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "image-densepose/GM/00009.jpg"
    written = root / "image-densepose" / "GM" / "00009.jpg"
    picture = np.asarray(Image.open(written))
    # The render is of the photo as decoded from its JPEG, best person scoring above 0.8.
    source = np.asarray(Image.open(root / "image" / "GM" / "00009.jpg").convert("RGB"))
    kept = tiny_predictor(source).above(DEFAULT_MIN_SCORE)  # every detection, then the legacy selection
    kept = kept.select([int(np.argmax(kept.scores))] if len(kept) else [])
    expected = viton(source, kept)
    assert picture.shape == expected.shape
    assert np.abs(picture.astype(float) - expected).mean() < JPEG_MEAN_TOLERANCE
    assert response.json()["detections"] == len(kept)
    assert not [name for name in _files(root) if name.rsplit("/", 1)[-1].startswith(".")], "temporary files left"


def test_jpg_is_tried_before_png(client, layout, photo):  # noqa: F811
    root, _ = layout
    Image.fromarray(np.zeros_like(photo)).save(root / "image" / "GM" / "00009.png")
    Image.fromarray(photo[:40]).save(root / "image" / "GM" / "only.png")
    assert client.post("/densepose", json=body()).status_code == 200
    assert Image.open(root / "image-densepose" / "GM" / "00009.jpg").size == (photo.shape[1], photo.shape[0])
    assert client.post("/densepose", json=body(file_name="only")).status_code == 200
    assert Image.open(root / "image-densepose" / "GM" / "only.jpg").size == (photo.shape[1], 40)


def test_absolute_paths_inside_the_root_are_allowed(client, layout):
    root, _ = layout
    response = client.post("/densepose", json=body(image_path=str(root / "image" / "GM"), dense_root=str(root / "out")))
    assert response.status_code == 200, response.text
    assert (root / "out" / "GM" / "00009.jpg").is_file()


def test_missing_photo_is_404_and_writes_nothing(client, layout):
    root, _ = layout
    before = _files(root)
    assert_one_line_error(client.post("/densepose", json=body(file_name="00010")), 404, "00010.jpg or")
    assert _files(root) == before


def test_undecodable_photo_is_422_and_writes_nothing(client, layout):
    root, _ = layout
    (root / "image" / "GM" / "broken.jpg").write_bytes(b"not a jpeg at all")
    before = _files(root)
    assert_one_line_error(client.post("/densepose", json=body(file_name="broken")), 422, "not an image")
    assert _files(root) == before


@pytest.mark.parametrize("fields", [
    {"ImagePath": "../outside"},
    {"ImagePath": "image/../../outside"},
    {"FileName": "../../../outside/secret"},
    {"DenseRootDir": "../outside"},
    {"ClientID": "../../outside"},
    {"FileName": "../../../outside/out"},
])
def test_dot_dot_escapes_are_403_and_touch_nothing(client, layout, fields):
    root, outside = layout
    before_root, before_outside = _files(root), _files(outside)
    assert_one_line_error(client.post("/densepose", json=body() | fields), 403, "outside the data root")
    assert (_files(root), _files(outside)) == (before_root, before_outside)


def test_absolute_paths_outside_are_403(client, layout):
    _, outside = layout
    before = _files(outside)
    assert_one_line_error(client.post("/densepose", json=body(image_path=str(outside), file_name="secret")), 403)
    assert_one_line_error(client.post("/densepose", json=body(dense_root=str(outside))), 403)
    assert_one_line_error(client.post("/densepose", json=body(image_path="/etc", file_name="passwd")), 403)
    assert _files(outside) == before


def test_symlinks_out_of_the_root_are_403(client, layout):
    root, outside = layout
    (root / "linked-in").symlink_to(outside, target_is_directory=True)  # folder link pointing out
    (root / "image" / "GM" / "leak.jpg").symlink_to(outside / "secret.jpg")  # file link pointing out
    (root / "image-densepose" / "GM").mkdir(parents=True)
    (root / "image-densepose" / "GM" / "00009.jpg").symlink_to(outside / "planted.jpg")  # output link pointing out
    before = _files(outside)
    assert_one_line_error(client.post("/densepose", json=body(image_path="linked-in", file_name="secret")), 403)
    assert_one_line_error(client.post("/densepose", json=body(file_name="leak")), 403)
    assert_one_line_error(client.post("/densepose", json=body(dense_root="linked-in")), 403)
    assert_one_line_error(client.post("/densepose", json=body()), 403)
    assert _files(outside) == before and not (outside / "planted.jpg").exists()


def test_symlinks_within_the_root_are_followed(client, layout):
    root, _ = layout
    (root / "alias").symlink_to(root / "image", target_is_directory=True)
    assert client.post("/densepose", json=body(image_path="alias/GM")).status_code == 200


def test_symlink_loop_is_refused(client, layout):
    root, _ = layout
    os.symlink(root / "loop", root / "loop")
    assert_one_line_error(client.post("/densepose", json=body(image_path="loop")), 403)


@pytest.mark.parametrize(("payload", "fragment"), [
    ({"DenseRootDir": "a", "ClientID": "b", "FileName": "c"}, "ImagePath: Field required"),
    ({"DenseRootDir": "a", "ClientID": 7, "FileName": "c", "ImagePath": "d"}, "ClientID"),
    ({"DenseRootDir": "a", "ClientID": "b", "FileName": "", "ImagePath": "d"}, "FileName must not be empty"),
])
def test_malformed_bodies_are_422(client, payload, fragment):
    assert_one_line_error(client.post("/densepose", json=payload), 422, fragment)


def test_not_json_is_422(client):
    assert_one_line_error(client.post("/densepose", content=b"DenseRootDir=x"), 422, "JSON")


def test_without_a_data_root_the_endpoint_is_off(tiny_predictor):  # noqa: F811
    with started(create_app(ServiceSettings(), lambda: tiny_predictor)) as client:
        assert_one_line_error(client.post("/densepose", json=body()), 403, "--data-root")


def test_a_file_name_too_long_for_any_file_system_is_422(client, layout):
    root, _ = layout
    before = _files(root)
    assert_one_line_error(client.post("/densepose", json=body(file_name="x" * 300)), 422, "longer than 255 bytes")
    assert_one_line_error(client.post("/densepose", json=body(client_id="c" * 256)), 422, "longer than 255 bytes")
    assert _files(root) == before


def test_messages_name_paths_as_the_request_did(client, layout):
    root, _ = layout
    answer = assert_one_line_error(client.post("/densepose", json=body(file_name="00010")), 404)
    assert answer == "no photo image/GM/00010.jpg or image/GM/00010.png"
    assert str(root) not in answer and str(root.resolve()) not in answer


@pytest.mark.parametrize("fields", [
    {"dense_root": "image", "client_id": "GM"},  # the render would be image/GM/00009.jpg: the photo itself
    {"dense_root": ".", "client_id": "image/GM"},
])
def test_a_render_over_its_own_photo_is_refused(client, layout, fields):
    root, _ = layout
    photo_file = root / "image" / "GM" / "00009.jpg"
    before = photo_file.read_bytes()
    assert_one_line_error(client.post("/densepose", json=body(**fields)), 409, "would replace a photo")
    assert photo_file.read_bytes() == before


def test_an_output_that_is_a_folder_or_under_a_file_is_409(client, layout):
    root, _ = layout
    (root / "image-densepose" / "GM" / "00009.jpg").mkdir(parents=True)
    assert_one_line_error(client.post("/densepose", json=body()), 409, "would replace a folder")
    (root / "blocked").write_text("a file where a folder must be")
    assert_one_line_error(client.post("/densepose", json=body(dense_root="blocked")), 409, "a file stands where a folder")
    assert (root / "blocked").read_text() == "a file where a folder must be"
