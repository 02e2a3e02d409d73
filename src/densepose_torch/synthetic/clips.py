"""Synthetic video clips: one to three people walking, turning and changing pose in front of a
panning, zooming camera, with exact DensePose ground truth in every frame.

    from densepose_torch.synthetic import SceneGenerator
    from densepose_torch.synthetic.clips import ClipRenderer
    clip = ClipRenderer(SceneGenerator(512), seed=(0, 3))
    frame = clip.frame(10)     # a Scene; instance k is the clip's person k in every frame

Everything is a function of the seed and the frame's time (index / fps), so frames can be
rendered in any order, by several processes, and a clip can be extended. Motion:
- each person has pose keyframes every `key_seconds` (half that for walkers and runners: a
  mirrored walking pose half a step later swings the other leg), eased between keyframes;
- walkers (pose family walk or run) move along the direction they face at a walking or running
  speed and turn slowly; others stand, and some turn on the spot;
- the camera pans (turns about the vertical) and zooms slowly; the background is a backdrop at
  infinity, so it follows the pan and zoom as a whole.
People may walk through each other (their meshes do not collide) and out of the picture: a
frame with nobody in it has empty ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..io.video import DEFAULT_FPS
from .appearance import Outfit, random_background, random_lighting, random_outfit
from .poses import POSE_FAMILIES, sample_pose
from .scene import Camera, PlacedPerson, Scene, SceneGenerator, empty_scene, finish_image, floor_spot, random_look, rotation_xyz

# Probabilities of 1, 2 and 3 people in a clip.
CLIP_PERSON_COUNT_PROBABILITIES = (0.45, 0.35, 0.2)
WALKING_FAMILIES = {"walk": (0.5, 1.3), "run": (1.5, 2.5)}  # speed range, metres per second


@dataclass(frozen=True)
class ClipConfig:
    fps: float = DEFAULT_FPS
    key_seconds: float = 1.0  # between pose keyframes of people who do not walk
    pan_degrees_per_second: float = 4.0  # standard deviation of the camera's pan rate
    max_pan_degrees: float = 10.0
    zoom_per_second: float = 0.08  # standard deviation of the relative zoom rate
    zoom_range: tuple[float, float] = (0.8, 1.25)
    walker_share: float = 0.6  # of people, walking or running; the rest stand (some turn)
    person_height_fraction: tuple[float, float] = (0.3, 0.9)  # standing height / image height at t = 0


@dataclass(frozen=True)
class _Actor:
    shape: np.ndarray  # (V + J, 3) rest shape
    family: str
    key_seconds: float
    seed: tuple[int, ...]  # of its pose keyframes
    yaw: float  # radians at t = 0
    yaw_rate: float  # radians per second
    start: np.ndarray  # (2,) floor position at t = 0 (world metres)
    speed: float  # metres per second along the facing direction
    lift: float  # height of the lowest vertex above the origin in the rest-posed, unrotated body
    outfit: Outfit
    radius: float


class ClipRenderer:
    """The frames of one clip (see the module docstring). `seed`: an int or a sequence of ints."""

    def __init__(self, generator: SceneGenerator, seed: int | Sequence[int], config: ClipConfig | None = None):
        self.generator = generator
        self.config = config or ClipConfig()
        self.seed = tuple(np.atleast_1d(seed).tolist())
        rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        size = generator.config.size
        self.camera = generator.random_camera(rng)
        cfg = self.config
        self.pan_rate = np.radians(rng.normal(0.0, cfg.pan_degrees_per_second))
        self.zoom_rate = rng.normal(0.0, cfg.zoom_per_second)
        count = int(rng.choice(len(CLIP_PERSON_COUNT_PROBABILITIES), p=CLIP_PERSON_COUNT_PROBABILITIES)) + 1
        self.actors: list[_Actor] = []
        for index in range(count):
            for _attempt in range(12):
                actor = self._place_actor(rng, index)
                if actor is not None:
                    self.actors.append(actor)
                    break
        # The backdrop is larger than a frame so that panning and zooming out stay inside it.
        self.backdrop_size = int(np.ceil(size * 1.6))
        horizon = self.backdrop_size / 2 + self.camera.focal * np.tan(self.camera.pitch)
        self.backdrop = random_background(rng, self.backdrop_size, self.backdrop_size, horizon, generator.backgrounds)
        self.light = random_lighting(rng)
        self.look = random_look(rng)
        self._forward = self._body_forward()

    # -- motion -------------------------------------------------------------------------------
    def _place_actor(self, rng: np.random.Generator, index: int) -> _Actor | None:
        generator, cfg = self.generator, self.generator.config
        body, camera = generator.body, self.camera
        shape = body.random_shape(rng)
        walker = rng.random() < self.config.walker_share
        family = ("walk" if rng.random() < 0.8 else "run") if walker else _standing_family(rng)
        speed = float(rng.uniform(*WALKING_FAMILIES[family])) if walker else 0.0
        yaw_rate = rng.normal(0.0, np.radians(20.0)) if walker or rng.random() < 0.4 else 0.0
        rest_height = float(np.ptp(shape[: body.n_vertices, 2]))
        distance, lateral = floor_spot(rng, camera, cfg.size, rest_height, self.config.person_height_fraction, (0.1, 0.9), 2.0)
        key_seconds = self.config.key_seconds / (2.0 if walker else 1.0)
        radius = 0.35
        start = np.array([lateral, distance])
        for other in self.actors:
            if np.linalg.norm(other.start - start) < radius + other.radius:
                return None
        seed = (*self.seed, 1, index)
        rest_pose, _ = body.pose(shape, sample_pose(np.random.default_rng(seed), body.joint_names, family), np.eye(3), np.zeros(3))
        return _Actor(shape, family, key_seconds, seed, float(rng.uniform(0, 2 * np.pi)), float(yaw_rate), start, speed,
                      float(rest_pose[:, 2].min()), random_outfit(rng), radius)

    def _body_forward(self) -> np.ndarray:
        """The floor direction the body faces at yaw 0 (from the hips to the nose)."""
        body = self.generator.body
        points = body.keypoints(body.pose(body.shape_mean, np.zeros((len(body.joint_names), 3)), np.eye(3), np.zeros(3))[0])
        direction = points[0, :2] - 0.5 * (points[11, :2] + points[12, :2])
        return direction / max(float(np.linalg.norm(direction)), 1e-9)

    def _pose_at(self, actor: _Actor, seconds: float) -> np.ndarray:
        names = self.generator.body.joint_names
        phase = seconds / actor.key_seconds
        k = int(np.floor(phase))
        a = sample_pose(np.random.default_rng((*actor.seed, k)), names, actor.family)
        b = sample_pose(np.random.default_rng((*actor.seed, k + 1)), names, actor.family)
        t = phase - k
        t = t * t * (3 - 2 * t)  # ease in and out
        return (1 - t) * a + t * b

    def _camera_at(self, seconds: float) -> Camera:
        cfg, camera = self.config, self.camera
        pan = float(np.clip(self.pan_rate * seconds, -np.radians(cfg.max_pan_degrees), np.radians(cfg.max_pan_degrees)))
        zoom = float(np.clip(1.0 + self.zoom_rate * seconds, *cfg.zoom_range))
        # Panning by `pan` about the world's vertical: world points turn by -pan before the camera's rotation.
        rotation = camera.rotation @ rotation_xyz(0.0, 0.0, -pan)
        return Camera(camera.focal * zoom, camera.position, rotation, camera.pitch)

    def _person_at(self, actor: _Actor, seconds: float, camera: Camera) -> PlacedPerson:
        body = self.generator.body
        yaw = actor.yaw + actor.yaw_rate * seconds
        # The walked path: the facing direction turns at a constant rate, so the path is an arc.
        if actor.speed and abs(actor.yaw_rate) > 1e-6:
            heading = lambda angle: _turn(self._forward, angle)  # noqa: E731
            swept = (np.array([[0.0, -1.0], [1.0, 0.0]]) @ (heading(yaw) - heading(actor.yaw))) / actor.yaw_rate
            position = actor.start - actor.speed * swept
        else:
            position = actor.start + actor.speed * seconds * _turn(self._forward, yaw)
        rotation = rotation_xyz(0.0, 0.0, yaw)
        vertices, _ = body.pose(actor.shape, self._pose_at(actor, seconds), rotation, np.zeros(3))
        world = vertices + np.array([position[0], position[1], -actor.lift])
        return self.generator.person_in_view(actor.shape, world, camera, actor.outfit, position, actor.radius)

    # -- frames -------------------------------------------------------------------------------
    def frame(self, index: int) -> Scene:
        """Frame `index` (time index / fps): image and ground truth; person k of the clip is
        instance k (and keypoints row k - 1) whether or not it is visible."""
        seconds = index / self.config.fps
        camera = self._camera_at(seconds)
        background = self._backdrop_view(camera)
        rng = np.random.default_rng(np.random.SeedSequence((*self.seed, 2, index)))
        people = [self._person_at(actor, seconds, camera) for actor in self.actors]
        if not people:
            return empty_scene(finish_image(rng, background, self.look))
        return self.generator.draw(camera, people, background, self.light, rng, look=self.look, keep_everyone=True)

    def _backdrop_view(self, camera: Camera) -> np.ndarray:
        """The part of the backdrop `camera` sees: a point at infinity straight ahead of the
        clip's first camera moves (and the backdrop scales) as the camera pans and zooms."""
        size, first = self.generator.config.size, self.camera
        far = np.array([[0.0, 1e6, first.position[2]]])
        start = first.project(first.to_camera(far), size)[0]
        now = camera.project(camera.to_camera(far), size)[0]
        scale = camera.focal / first.focal
        half = self.backdrop_size / 2
        # backdrop pixel c is seen at scale * (c - half - start + size / 2) + now
        matrix = np.array([[scale, 0.0, now[0] - scale * (half + start[0] - size / 2)],
                           [0.0, scale, now[1] - scale * (half + start[1] - size / 2)]], np.float32)
        return cv2.warpAffine(self.backdrop, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _standing_family(rng: np.random.Generator) -> str:
    names = [name for name in POSE_FAMILIES if name not in WALKING_FAMILIES]
    weights = np.array([POSE_FAMILIES[name][0] for name in names])
    return names[rng.choice(len(names), p=weights / weights.sum())]


def _turn(direction: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]])

