"""Random scenes of 1 to 4 synthetic people, rendered with exact DensePose ground truth.

    from densepose_torch.synthetic import SceneGenerator
    generator = SceneGenerator(size=512)
    scene = generator.render(seed=7)   # same seed, same bytes
    scene.image, scene.I, scene.U, scene.V, scene.instance, scene.keypoints

People stand (or sit, squat, ...) on a floor seen by a pinhole camera of random field of view,
height, pitch and roll; their distance follows from a random apparent height (so some are small,
some are cut by the image border) and they never stand inside each other, but may hide each
other. Everything random comes from one numpy Generator seeded by `seed`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Sequence, get_args

import cv2
import numpy as np

from ..errors import DensePoseError
from ..io.images import IMAGE_EXTENSIONS
from .appearance import (
    Outfit,
    body_landmarks,
    material_albedo,
    random_background,
    random_lighting,
    random_outfit,
    shade,
)
from .backgrounds import SCIKIT_IMAGE, bundled_backgrounds
from .body import BodyModel, load_body
from .photo import EMPTY_SCENE_PROBABILITY, add_distractors, degrade, jitter_colours
from .poses import sample_pose
from .raster import rasterize

SceneLook = Literal["plain", "photo"]
SCENE_LOOKS: tuple[str, ...] = get_args(SceneLook)

# Probabilities of 1, 2, 3 and 4 people in an image.
PERSON_COUNT_PROBABILITIES = (0.35, 0.3, 0.2, 0.15)


@dataclass(frozen=True)
class SceneConfig:
    size: int = 512  # square images, pixels
    fov_degrees: tuple[float, float] = (35.0, 65.0)
    camera_height: tuple[float, float] = (0.6, 2.2)  # metres above the floor
    camera_pitch_degrees: tuple[float, float] = (-20.0, 8.0)  # negative looks down
    person_height_fraction: tuple[float, float] = (0.2, 1.2)  # standing height / image height, log-uniform
    keypoint_occlusion_tolerance: float = 0.15  # metres in front of a keypoint before it counts as hidden
    look: SceneLook = "plain"  # "photo": distractors, empty scenes, camera defects (synthetic.photo)
    # Share of scenes with nobody in them (the detector's pure negatives); None: the look's own,
    # synthetic.photo.EMPTY_SCENE_PROBABILITY for the photo look, none for the plain look.
    empty_share: float | None = None

    def __post_init__(self) -> None:
        check_scene_settings(self.person_height_fraction, self.empty_share)


def check_scene_settings(person_height: tuple[float, float] | None = None, empty_share: float | None = None) -> None:
    """Refuse a range of person heights (fractions of the image height) that is not
    0 < low <= high, or a share of people-free scenes outside 0..1; None is not checked."""
    if person_height is not None:
        low, high = person_height
        if not 0 < low <= high:
            raise DensePoseError(f"person height must be two fractions of the image height, 0 < LOW <= HIGH; got {low:g}, {high:g}")
    if empty_share is not None and not 0 <= empty_share <= 1:
        raise DensePoseError(f"the share of empty scenes must be between 0 and 1; got {empty_share:g}")


def scene_config(size: int, look: SceneLook = "plain", person_height: tuple[float, float] | None = None,
                 empty_share: float | None = None) -> SceneConfig:
    """The scene settings a dataset names: its image size, look and, when given, its range of
    person heights (fractions of the image height; None keeps SceneConfig's framing) and its
    share of scenes with nobody (None: the look's own)."""
    config = SceneConfig(size=size, look=look, empty_share=empty_share)
    return config if person_height is None else replace(config, person_height_fraction=tuple(person_height))


@dataclass(frozen=True)
class Scene:
    """One rendered image with its dense ground truth. Person k (1-based) owns the pixels where
    instance == k; in a still scene people that ended up with no visible pixel are not listed, in
    a frame of a clip (synthetic.clips) every person of the clip is, so that k is the same person
    in every frame."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    I: np.ndarray  # noqa: E741  (H, W) uint8 DensePose part, 0 = background
    U: np.ndarray  # (H, W) float32, 0 on background
    V: np.ndarray  # (H, W) float32, 0 on background
    instance: np.ndarray  # (H, W) uint16, 0 = background, k = person k
    depth: np.ndarray  # (H, W) float32 camera depth in metres, inf on background
    keypoints: np.ndarray  # (N, 17, 3) float32 COCO keypoints: x, y (pixel index units), v in {0, 1, 2}

    @property
    def num_persons(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass(frozen=True)
class PlacedPerson:
    """One placed person, in camera coordinates (OpenCV axes: x right, y down, z ahead)."""

    vertices: np.ndarray  # (V, 3)
    normals: np.ndarray  # (V, 3)
    rest: np.ndarray  # (V, 3) rest-pose vertices of the person's own shape (for clothing patterns)
    keypoints: np.ndarray  # (17, 3)
    outfit: Outfit
    centre: np.ndarray  # (2,) footprint centre on the floor, world coordinates
    radius: float  # footprint radius: people keep their footprints apart


@dataclass(frozen=True)
class Camera:
    """A pinhole camera of square images: focal length in pixels, position in world metres,
    world-to-camera rotation (rows: the camera's x right, y down, z ahead in world axes)."""

    focal: float
    position: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3)
    pitch: float  # radians, negative looks down

    def to_camera(self, world: np.ndarray) -> np.ndarray:
        return (world - self.position) @ self.rotation.T

    def project(self, camera_points: np.ndarray, size: int) -> np.ndarray:
        """(N, 2) image positions (pixel-edge units) of (N, 3) camera-space points."""
        return self.focal * camera_points[:, :2] / camera_points[:, 2:3] + size / 2.0


class SceneGenerator:
    """Renders random scenes; `backgrounds` is an optional folder (or list) of images used as
    backgrounds for most scenes instead of procedural ones."""

    def __init__(self, size: int = 512, backgrounds: str | Path | Sequence[str | Path] | None = None,
                 body: BodyModel | None = None, config: SceneConfig | None = None):
        if int(size) < 32:
            raise DensePoseError(f"image size must be at least 32 pixels, got {size}")
        self.config = SceneConfig(size=int(size)) if config is None else config
        if self.config.look not in SCENE_LOOKS:
            raise DensePoseError(f"unknown scene look {self.config.look!r} (known: {', '.join(SCENE_LOOKS)})")
        self.body = body if body is not None else load_body()
        self.landmarks = body_landmarks(self.body)
        self.backgrounds = list_backgrounds(backgrounds)
        self._face_uv = self.body.face_uv.astype(np.float32)

    def render(self, seed: int | Sequence[int]) -> Scene:
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        size = self.config.size
        camera = self.random_camera(rng)
        wanted = int(rng.choice(len(PERSON_COUNT_PROBABILITIES), p=PERSON_COUNT_PROBABILITIES)) + 1
        photo = self.config.look == "photo"  # the plain look draws nothing more (unless given an empty share), so its seeds keep their bytes
        empty_share = EMPTY_SCENE_PROBABILITY if photo and self.config.empty_share is None else self.config.empty_share
        if empty_share is not None and rng.random() < empty_share:
            wanted = 0
        people: list[PlacedPerson] = []
        for _ in range(wanted):
            for _attempt in range(12):
                person = self._place_person(rng, camera, people)
                if person is not None:
                    people.append(person)
                    break

        background = random_background(rng, size, size, size / 2 + camera.focal * np.tan(camera.pitch), self.backgrounds)
        if photo:
            background = add_distractors(rng, jitter_colours(rng, background), self.backgrounds)
        light = random_lighting(rng)
        if not people:
            image = finish_image(rng, background)
            return empty_scene(degrade(rng, image) if photo else image)
        scene = self.draw(camera, people, background, light, rng)
        return replace(scene, image=degrade(rng, scene.image)) if photo else scene

    def random_camera(self, rng: np.random.Generator) -> Camera:
        """A camera of random field of view, pitch, roll and height, at the world origin."""
        cfg = self.config
        fov = np.radians(rng.uniform(*cfg.fov_degrees))
        focal = 0.5 * cfg.size / np.tan(0.5 * fov)
        pitch = np.radians(rng.uniform(*cfg.camera_pitch_degrees))
        roll = np.radians(rng.normal(0.0, 2.0))
        position = np.array([0.0, 0.0, rng.uniform(*cfg.camera_height)])
        return Camera(float(focal), position, _camera_rotation(pitch, roll), float(pitch))

    def draw(self, camera: Camera, people: list[PlacedPerson], background: np.ndarray, light, rng: np.random.Generator,
             look: tuple[float, float, float, float] | None = None, keep_everyone: bool = False) -> Scene:
        """Rasterise and shade `people` over `background` (float 0..1) with their ground truth.
        `rng` draws the surface grain and the sensor noise (and the camera look, unless `look`
        fixes it); `keep_everyone` lists every person, visible or not (clip frames)."""
        size = self.config.size
        focal = camera.focal
        body = self.body
        n_vertices = body.n_vertices
        cam_vertices = np.concatenate([p.vertices for p in people])
        screen = np.concatenate([camera.project(cam_vertices, size), cam_vertices[:, 2:3]], axis=1)
        faces = np.concatenate([body.faces + k * n_vertices for k in range(len(people))])
        frags = rasterize(screen, faces, size, size)

        hit = frags.face >= 0
        face = frags.face[hit].astype(np.int64)
        bary = frags.bary[hit]
        n_faces = len(body.faces)
        person_of_pixel = face // n_faces
        local_face = face % n_faces

        parts = np.zeros((size, size), dtype=np.uint8)
        u_map = np.zeros((size, size), dtype=np.float32)
        v_map = np.zeros((size, size), dtype=np.float32)
        parts[hit] = body.face_part[local_face]
        uv = np.einsum("nk,nkc->nc", bary, self._face_uv[local_face])
        u_map[hit] = np.clip(uv[:, 0], 0.0, 1.0)
        v_map[hit] = np.clip(uv[:, 1], 0.0, 1.0)

        # Shading.
        corner = faces[face]  # (n, 3) global vertex ids
        normals = np.concatenate([p.normals for p in people])
        rest = np.concatenate([p.rest for p in people])
        normal = np.einsum("nk,nkc->nc", bary, normals[corner])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        position = np.einsum("nk,nkc->nc", bary, cam_vertices[corner])
        view = -position / np.linalg.norm(position, axis=1, keepdims=True)
        rest_position = np.einsum("nk,nkc->nc", bary, rest[corner])
        nearest = body.faces[local_face, bary.argmax(axis=1)]
        head_offset = np.einsum("nk,nkc->nc", bary, self.landmarks.head_offset[body.faces[local_face]])
        albedo = np.zeros((len(face), 3))
        shininess = np.zeros(len(face))
        for k, person in enumerate(people):
            mine = person_of_pixel == k
            material = np.zeros(len(face), dtype=np.uint8)
            material[mine] = person.outfit.material_of(
                parts[hit][mine], u_map[hit][mine], head_offset[mine],
                self.landmarks.eye[nearest[mine]], self.landmarks.iris[nearest[mine]])
            for m, mat in enumerate(person.outfit.materials):
                sel = mine & (material == m)
                if sel.any():
                    albedo[sel] = material_albedo(mat, rest_position[sel], rng)
                    shininess[sel] = mat.shininess
        image = background.copy()
        image[hit] = shade(albedo, normal, view, shininess, light)
        image = finish_image(rng, image, look)

        # People with no visible pixel are dropped (unless keep_everyone); the others are numbered 1.. in order.
        visible = np.bincount(person_of_pixel, minlength=len(people)) > 0
        if keep_everyone:
            visible[:] = True
        renumber = np.cumsum(visible).astype(np.uint16) * visible
        instance = np.zeros((size, size), dtype=np.uint16)
        instance[hit] = renumber[person_of_pixel]
        keypoints = np.zeros((int(visible.sum()), 17, 3), dtype=np.float32)
        tolerance = self.config.keypoint_occlusion_tolerance
        for k, person in enumerate(p for p, keep in zip(people, visible) if keep):
            keypoints[k] = _keypoints(person.keypoints, focal, size, frags.depth, tolerance)
        return Scene(image, parts, u_map, v_map, instance, frags.depth, keypoints)

    def _place_person(self, rng, camera: Camera, others: list[PlacedPerson]) -> PlacedPerson | None:
        cfg, body = self.config, self.body
        shape = body.random_shape(rng)
        angles = sample_pose(rng, body.joint_names)
        yaw = rng.uniform(0.0, 2 * np.pi)
        tilt = rotation_xyz(rng.normal(0, 0.03), rng.normal(0, 0.03), yaw)
        vertices, _ = body.pose(shape, angles, tilt, np.zeros(3))
        rest_height = float(np.ptp(shape[: body.n_vertices, 2]))
        distance, lateral = floor_spot(rng, camera, cfg.size, rest_height, cfg.person_height_fraction, (-0.15, 1.15), 1.2)
        footprint = vertices[:, :2].mean(axis=0)
        radius = float(np.max(np.linalg.norm(vertices[:, :2] - footprint, axis=1)))
        offset = np.array([lateral, distance, 0.0]) - np.array([footprint[0], footprint[1], vertices[:, 2].min()])
        centre = footprint + offset[:2]
        for other in others:
            if np.linalg.norm(other.centre - centre) < radius + other.radius:
                return None
        world = vertices + offset
        cam = camera.to_camera(world)
        if cam[:, 2].min() < 0.3:
            return None
        # At least 30% of the person's projected box must fall inside the image.
        xy = camera.project(cam, cfg.size)
        lo_xy, hi_xy = xy.min(axis=0), xy.max(axis=0)
        inside = np.clip(hi_xy, 0, cfg.size) - np.clip(lo_xy, 0, cfg.size)
        if inside.prod() < 0.3 * (hi_xy - lo_xy).prod():
            return None
        return self.person_in_view(shape, world, camera, random_outfit(rng), centre, radius)

    def person_in_view(self, shape: np.ndarray, world: np.ndarray, camera: Camera, outfit: Outfit,
                       centre: np.ndarray, radius: float) -> PlacedPerson:
        """A posed person (world vertices of the rest `shape`) as `camera` sees it."""
        body = self.body
        return PlacedPerson(
            vertices=camera.to_camera(world).astype(np.float64),
            normals=body.vertex_normals(world) @ camera.rotation.T,
            rest=shape[: body.n_vertices],
            keypoints=camera.to_camera(body.keypoints(world)),
            outfit=outfit,
            centre=centre,
            radius=radius,
        )


def floor_spot(rng: np.random.Generator, camera: Camera, size: int, rest_height: float,
               height_fraction: tuple[float, float], columns: tuple[float, float], min_distance: float) -> tuple[float, float]:
    """Where a person of `rest_height` metres stands: (distance ahead, lateral offset) in metres,
    for a standing height drawn log-uniformly in `height_fraction` of the image and an image column
    drawn uniformly in `columns` (fractions of the width); never nearer than `min_distance`."""
    lo, hi = np.log(height_fraction)
    apparent = np.exp(rng.uniform(lo, hi)) * size
    distance = max(min_distance, camera.focal * rest_height / apparent)
    column = rng.uniform(*columns) * size
    return distance, (column - size / 2) * distance / camera.focal


def render_scene(seed: int | Sequence[int], size: int = 512) -> Scene:
    """One random scene (see SceneGenerator; build a generator once to render many)."""
    return SceneGenerator(size=size).render(seed)


def list_backgrounds(backgrounds: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """Image files of a background folder (sorted, so a seed means the same picture), of the
    bundled set `scikit-image` (synthetic.backgrounds), or the given list."""
    if backgrounds is None:
        return []
    if isinstance(backgrounds, str) and backgrounds == SCIKIT_IMAGE:
        if Path(backgrounds).exists():
            raise DensePoseError(f"--backgrounds {backgrounds} is both a folder here and the name of the bundled set; "
                                 f"write ./{backgrounds} for the folder, or run elsewhere for the set")
        return bundled_backgrounds(backgrounds)
    if isinstance(backgrounds, (str, Path)):
        folder = Path(backgrounds)
        if not folder.is_dir():
            raise DensePoseError(f"no such background folder: {folder} (nor is it a bundled set: {SCIKIT_IMAGE})")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise DensePoseError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in background folder {folder}")
        return files
    return [Path(p) for p in backgrounds]


def _camera_rotation(pitch: float, roll: float) -> np.ndarray:
    """World (Z up, camera looking along +Y) to OpenCV camera axes (x right, y down, z ahead)."""
    forward = np.array([0.0, np.cos(pitch), np.sin(pitch)])
    down = np.array([0.0, np.sin(pitch), -np.cos(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return np.stack([right, down, forward])


def rotation_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) matrix that rotates a column vector by rx about x, then ry about y, then rz about z (radians)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return z @ y @ x


def _keypoints(points_camera: np.ndarray, focal: float, size: int, depth: np.ndarray, tolerance: float) -> np.ndarray:
    """COCO [x, y, v] rows: v = 0 outside the image (x = y = 0), 1 hidden behind a surface more
    than `tolerance` in front of the point, 2 visible. x, y are in COCO's pixel-index units
    (the centre of pixel column j is x = j)."""
    out = np.zeros((len(points_camera), 3), dtype=np.float64)
    z = points_camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = focal * points_camera[:, 0] / z + size / 2.0
        y = focal * points_camera[:, 1] / z + size / 2.0
    inside = (z > 0) & (x >= 0) & (y >= 0) & (x < size) & (y < size)
    col = np.clip(np.floor(np.nan_to_num(x)), 0, size - 1).astype(np.int64)
    row = np.clip(np.floor(np.nan_to_num(y)), 0, size - 1).astype(np.int64)
    hidden = depth[row, col] < z - tolerance
    out[inside, 0] = x[inside] - 0.5
    out[inside, 1] = y[inside] - 0.5
    out[inside, 2] = np.where(hidden[inside], 1, 2)
    return out


def _random_exposure(rng: np.random.Generator) -> tuple[float, float, float]:
    """Gamma, gain and blur sigma of a camera look."""
    gamma, gain, sigma = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.1), rng.uniform(0.3, 0.9)
    return float(gamma), float(gain), float(sigma)


def _random_noise_level(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.003, 0.02))


def random_look(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A camera look (gamma, gain, blur sigma, noise level), with a still scene's ranges."""
    return (*_random_exposure(rng), _random_noise_level(rng))


def finish_image(rng: np.random.Generator, image: np.ndarray, look: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Camera look: exposure/gamma jitter, slight blur, sensor noise, 8-bit. Without `look`, its
    values are drawn from `rng` (between the pixels' noise and its level, as they always were)."""
    gamma, gain, sigma = look[:3] if look else _random_exposure(rng)
    image = np.clip(image, 0.0, 1.0) ** gamma * gain
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    noise = rng.standard_normal(size=image.shape, dtype=np.float32)
    image = image + noise * np.float32(look[3] if look else _random_noise_level(rng))
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def empty_scene(image: np.ndarray) -> Scene:
    """A scene of `image` with nobody in it (all truth maps empty)."""
    h, w = image.shape[:2]
    return Scene(image, np.zeros((h, w), np.uint8), np.zeros((h, w), np.float32), np.zeros((h, w), np.float32),
                 np.zeros((h, w), np.uint16), np.full((h, w), np.inf, np.float32), np.zeros((0, 17, 3), np.float32))
