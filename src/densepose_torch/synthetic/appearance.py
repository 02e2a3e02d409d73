"""How synthetic people and their surroundings look: skin tones, hair, clothing-like materials
with procedural patterns, Lambertian lighting, and procedural (or user-given) backgrounds.

Clothing is decided per pixel from the DensePose part and chart coordinate U (top, bottom or
one-piece, shoes, sleeve and leg lengths), and each material's pattern is evaluated on the
person's rest-pose surface position, so stripes and checks follow the body as it moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..io.images import read_image
from .body import BodyModel

SKIN, HAIR, TOP, BOTTOM, SHOES, SCLERA, IRIS = range(7)

# Skin tones from very light to very dark (sRGB 0..1), sampled with jitter.
SKIN_TONES = np.array([
    [255, 224, 196], [241, 194, 167], [224, 172, 135], [198, 134, 96], [176, 118, 82],
    [141, 85, 54], [112, 66, 40], [84, 48, 30], [62, 36, 24],
]) / 255.0
HAIR_COLOURS = np.array([
    [20, 16, 14], [45, 30, 22], [80, 55, 35], [120, 85, 55], [170, 130, 80], [210, 180, 120],
    [140, 60, 30], [160, 160, 160], [225, 225, 220],
]) / 255.0
IRIS_COLOURS = np.array([[60, 35, 20], [90, 60, 30], [70, 100, 130], [80, 110, 70]]) / 255.0

PATTERN_SOLID, PATTERN_STRIPES, PATTERN_CHECKS, PATTERN_NOISE = range(4)


@dataclass(frozen=True)
class Material:
    colour: np.ndarray  # (3,) main colour, RGB 0..1
    second: np.ndarray  # (3,) pattern colour
    pattern: int
    period: float  # metres
    direction: np.ndarray  # (3,) unit vector for stripes, in rest-pose coordinates
    phase: float
    noise_cells: np.ndarray  # (n, n, n) random values for the noise pattern
    shininess: float  # 0 matte .. 1 glossy


@dataclass(frozen=True)
class Outfit:
    """Where each material is on the body, by DensePose part and chart coordinate U (0 at the
    top / proximal end of a part), plus the materials themselves."""

    waist: float  # torso U from which the bottom garment starts
    upper_arm_end: float  # upper arms are covered by the top where U < this (-1: sleeveless)
    lower_arm_end: float
    upper_leg_end: float  # legs are covered by the bottom garment where U < this
    lower_leg_end: float
    boots_start: float  # lower legs are shoes where U > this (2: no boots)
    shoes: bool
    hairline: tuple[float, float] | None  # height of the hairline above the head centre, front and back
    materials: tuple[Material, ...]  # indexed by SKIN, HAIR, TOP, ...

    def material_of(self, part: np.ndarray, along: np.ndarray, head_offset: np.ndarray,
                    eye: np.ndarray, iris: np.ndarray) -> np.ndarray:
        """(N,) material id of surface points given their part, chart U, template offset from
        the head centre (N, 3) and eyeball flags."""
        material = np.full(part.shape, SKIN, dtype=np.uint8)
        torso = part <= 2
        material[torso] = np.where(along[torso] < self.waist, TOP, BOTTOM)
        upper_arm = (part >= 15) & (part <= 18)
        lower_arm = (part >= 19) & (part <= 22)
        upper_leg = (part >= 7) & (part <= 10)
        lower_leg = (part >= 11) & (part <= 14)
        material[upper_arm & (along < self.upper_arm_end)] = TOP
        material[lower_arm & (along < self.lower_arm_end)] = TOP
        material[upper_leg & (along < self.upper_leg_end)] = BOTTOM
        material[lower_leg & (along < self.lower_leg_end)] = BOTTOM
        material[lower_leg & (along > self.boots_start)] = SHOES
        if self.shoes:
            material[(part == 5) | (part == 6)] = SHOES
        if self.hairline is not None:
            front, back = self.hairline
            t = np.clip((head_offset[:, 1] + 0.06) / 0.14, 0.0, 1.0)  # 0 at the forehead, 1 at the back
            material[(part >= 23) & (head_offset[:, 2] > front + (back - front) * t)] = HAIR
        material[eye] = SCLERA
        material[iris] = IRIS
        return material


@dataclass(frozen=True)
class BodyLandmarks:
    """Per-vertex facts about the template body used to dress people."""

    head_offset: np.ndarray  # (V, 3) rest position minus the head centre
    eye: np.ndarray  # (V,) eyeball vertices
    iris: np.ndarray  # (V,) front cap of the eyeballs


def body_landmarks(body: BodyModel) -> BodyLandmarks:
    part = body.face_part
    rest = body.rest_vertices.astype(np.float64)
    head = rest[np.unique(body.faces[part >= 23])]
    centre = np.array([0.0, head[:, 1].mean(), np.percentile(head[:, 2], 60)])
    eye = body.eye_vertex
    iris = np.zeros_like(eye)
    for side in (-1, 1):
        sel = eye & (np.sign(rest[:, 0]) == side)
        if sel.any():
            front = rest[sel, 1].min()
            iris[sel] = rest[sel, 1] < front + 0.006
    return BodyLandmarks((rest - centre).astype(np.float32), eye, iris)


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.0, 0.9),
                  value: tuple[float, float] = (0.1, 0.95)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255.0


def random_material(rng: np.random.Generator, colour: np.ndarray | None = None) -> Material:
    colour = random_colour(rng) if colour is None else colour
    pattern = int(rng.choice(4, p=[0.45, 0.25, 0.15, 0.15]))
    second = random_colour(rng) if rng.random() < 0.6 else np.clip(colour * rng.uniform(0.4, 0.8), 0, 1)
    direction = rng.normal(size=3)
    if rng.random() < 0.6:
        direction = np.array([0.0, 0.0, 1.0]) + 0.1 * direction  # horizontal stripes are common
    return Material(
        colour=colour, second=second, pattern=pattern, period=float(rng.uniform(0.02, 0.12)),
        direction=direction / np.linalg.norm(direction), phase=float(rng.uniform(0, 1)),
        noise_cells=rng.random((6, 6, 6)), shininess=float(rng.uniform(0.0, 0.4)),
    )


def random_outfit(rng: np.random.Generator) -> Outfit:
    sleeve = rng.choice(["none", "short", "long"], p=[0.2, 0.4, 0.4])
    upper_arm_end = {"none": -1.0, "short": rng.uniform(0.3, 0.8), "long": 2.0}[sleeve]
    lower_arm_end = rng.uniform(0.7, 0.97) if sleeve == "long" else -1.0
    legs = rng.choice(["shorts", "knee", "long"], p=[0.2, 0.2, 0.6])
    upper_leg_end = rng.uniform(0.2, 0.7) if legs == "shorts" else 2.0
    lower_leg_end = {"shorts": -1.0, "knee": rng.uniform(0.1, 0.5), "long": rng.uniform(0.85, 1.0)}[legs]
    shoes = rng.random() < 0.9
    boots_start = rng.uniform(0.6, 0.9) if shoes and rng.random() < 0.2 else 2.0
    hairline = (rng.uniform(0.03, 0.07), rng.uniform(-0.12, 0.0)) if rng.random() < 0.9 else None

    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.08) + rng.normal(0, 0.02, 3)
    hair_colour = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
    skin = Material(np.clip(tone, 0, 1), np.clip(tone, 0, 1), PATTERN_SOLID, 1.0,
                    np.array([0.0, 0.0, 1.0]), 0.0, np.zeros((6, 6, 6)), 0.25)
    hair = Material(np.clip(hair_colour, 0, 1), np.clip(hair_colour * 0.7, 0, 1), PATTERN_NOISE, 0.004,
                    np.array([0.0, 0.0, 1.0]), 0.0, rng.random((6, 6, 6)), 0.3)
    top = random_material(rng)
    bottom = top if rng.random() < 0.12 else random_material(rng)
    shoe = random_material(rng, colour=random_colour(rng, value=(0.05, 0.8)))
    sclera = Material(np.array([0.92, 0.9, 0.87]), np.array([0.9, 0.85, 0.85]), PATTERN_SOLID, 1.0,
                      np.array([0.0, 0.0, 1.0]), 0.0, np.zeros((6, 6, 6)), 0.8)
    iris_colour = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    iris = Material(iris_colour, iris_colour, PATTERN_SOLID, 1.0, np.array([0.0, 0.0, 1.0]), 0.0,
                    np.zeros((6, 6, 6)), 0.8)
    return Outfit(float(rng.uniform(0.5, 0.7)), upper_arm_end, lower_arm_end, upper_leg_end, lower_leg_end,
                  boots_start, bool(shoes), hairline, (skin, hair, top, bottom, shoe, sclera, iris))


def material_albedo(material: Material, position: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) colour of N surface points given their rest-pose positions (N, 3)."""
    n = len(position)
    if material.pattern == PATTERN_SOLID:
        mix = np.zeros(n)
    elif material.pattern == PATTERN_STRIPES:
        mix = (np.mod(position @ material.direction / material.period + material.phase, 1.0) < 0.5).astype(np.float64)
    elif material.pattern == PATTERN_CHECKS:
        other = np.cross(material.direction, [0.3, 0.9, 0.1])
        other /= np.linalg.norm(other)
        a = np.mod(position @ material.direction / material.period + material.phase, 1.0) < 0.5
        b = np.mod(position @ other / material.period, 1.0) < 0.5
        mix = 0.5 * (a.astype(np.float64) + b.astype(np.float64))
    else:
        mix = _value_noise(material.noise_cells, position / (material.period * 4))
        mix = np.clip((mix - 0.35) * 2.5, 0, 1)
    colour = material.colour[None] * (1 - mix[:, None]) + material.second[None] * mix[:, None]
    grain = 1.0 + rng.normal(0.0, 0.025, size=(n, 1))
    return colour * grain


def _value_noise(cells: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of a periodic random grid."""
    size = cells.shape[0]
    base = np.floor(p).astype(np.int64)
    f = p - base
    f = f * f * (3 - 2 * f)
    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * cells[(base[:, 0] + dx) % size, (base[:, 1] + dy) % size, (base[:, 2] + dz) % size]
    return out


@dataclass(frozen=True)
class Lighting:
    direction: np.ndarray  # (3,) towards the key light, camera coordinates
    ambient: float
    diffuse: float
    colour: np.ndarray  # (3,) tint


def random_lighting(rng: np.random.Generator) -> Lighting:
    d = np.array([rng.uniform(-1, 1), rng.uniform(-1.2, 0.1), -rng.uniform(0.2, 1.0)])
    tint = np.clip(1.0 + rng.normal(0, 0.06, 3), 0.8, 1.2)
    return Lighting(d / np.linalg.norm(d), float(rng.uniform(0.25, 0.55)), float(rng.uniform(0.45, 0.85)), tint)


def shade(albedo: np.ndarray, normal: np.ndarray, view: np.ndarray, shininess: np.ndarray, light: Lighting) -> np.ndarray:
    """Lambert + a soft Blinn highlight. normal/view are (N, 3) unit vectors in camera space
    (view points from the surface to the camera)."""
    lambert = np.clip(normal @ light.direction, 0.0, 1.0)
    wrap = np.clip(0.5 + 0.5 * (normal @ light.direction), 0.0, 1.0)  # soft fill from the key side
    half = light.direction[None] + view
    half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-9)
    spec = np.clip((normal * half).sum(axis=1), 0.0, 1.0) ** 24 * shininess
    lit = albedo * (light.ambient + light.diffuse * (0.75 * lambert + 0.25 * wrap))[:, None] + 0.35 * spec[:, None]
    return lit * light.colour[None]


# ---------------------------------------------------------------------------------------------
# backgrounds


def random_background(rng: np.random.Generator, height: int, width: int, horizon: float,
                      images: list[Path] | None = None) -> np.ndarray:
    """(H, W, 3) float32 0..1: a random crop of a user image (when `images` is given, with
    probability 0.8) or a procedural scene: wall/sky and floor split at the `horizon` row,
    smooth colour noise, clutter shapes, sometimes floor tiles, sometimes blurred. Procedural
    backgrounds are drawn at half resolution (they are smooth, and it halves the time)."""
    if images and rng.random() < 0.8:
        return _image_background(rng, images[rng.integers(len(images))], height, width)
    h, w = max(height // 2, 8), max(width // 2, 8)
    horizon_row = float(np.clip(horizon * h / height, 0.05 * h, 0.95 * h))
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    wall = random_colour(rng, value=(0.3, 1.0)).astype(np.float32)
    floor = random_colour(rng, value=(0.15, 0.8)).astype(np.float32)
    tint = random_colour(rng).astype(np.float32)
    t = rows / h
    upper = wall * (1.1 - 0.3 * t) + tint * 0.15 * t
    lower = floor * (0.7 + 0.4 * t)
    soft = 1.0 / (1.0 + np.exp(np.clip((horizon_row - rows) * (160.0 / h), -60.0, 60.0)))
    column = upper * (1 - soft) + lower * soft  # (h, 1, 3)
    image = np.repeat(column, w, axis=1)
    for octave in (4, 16, 48):
        cells = rng.random((octave, octave, 3), dtype=np.float32)
        image += (cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC) - 0.5) * np.float32(0.6 / np.sqrt(octave))
    if rng.random() < 0.4:  # floor tiles in perspective, faded towards the horizon
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        below = np.maximum(ys - horizon_row, 0.0)
        depth = np.maximum(below, 1.0)
        gx = (xs - w / 2) / depth * rng.uniform(1, 4)
        gz = h / depth * rng.uniform(0.5, 2.0)
        tiles = ((np.floor(gx) + np.floor(gz)) % 2).astype(np.float32) - 0.5
        fade = np.clip(below / (0.25 * h), 0.0, 1.0)
        image += (tiles * fade * rng.uniform(0.05, 0.25))[..., None]
    canvas = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 14))):
        colour = tuple(int(c) for c in (random_colour(rng) * 255))
        alpha = rng.uniform(0.3, 1.0)
        kind = rng.integers(3)
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        shape = np.zeros((h, w), np.uint8)
        if kind == 0:
            cv2.rectangle(shape, (x0, y0), (x0 + int(rng.integers(5, w // 2)), y0 + int(rng.integers(5, h))), 1, -1)
        elif kind == 1:
            cv2.circle(shape, (x0, y0), int(rng.integers(3, w // 5)), 1, -1)
        else:
            cv2.line(shape, (x0, y0), (int(rng.integers(0, w)), int(rng.integers(0, h))), 1, int(rng.integers(1, 6)))
        sel = shape.astype(bool)
        canvas[sel] = (alpha * np.array(colour) + (1 - alpha) * canvas[sel]).astype(np.uint8)
    small = canvas.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.3, 2.0))
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _image_background(rng: np.random.Generator, path: Path, height: int, width: int) -> np.ndarray:
    pixels = read_image(path)
    h, w = pixels.shape[:2]
    scale = rng.uniform(0.5, 1.0)
    crop_h = max(1, int(min(h, w * height / width) * scale))
    crop_w = max(1, int(crop_h * width / height))
    crop_w = min(crop_w, w)
    y0 = int(rng.integers(0, h - crop_h + 1))
    x0 = int(rng.integers(0, w - crop_w + 1))
    crop = pixels[y0:y0 + crop_h, x0:x0 + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
