"""The `photo` look of synthetic scenes: what real photographs have and clean renders lack.

A detector trained on clean renders over smooth backgrounds learns that anything textured and
lit is a person. The photo look (SceneConfig.look = "photo") adds, with the probabilities below:
colour-jittered backgrounds, distractor objects that are lit and patterned like clothing (or cut
out of a real photograph) but are not people (upright poles and bottles among them: a person's
aspect ratio), scenes with nobody in them, and a camera's defects after rendering: a colour
cast, lost resolution, motion blur, grey images and JPEG artefacts. Everything is drawn from the
scene's generator, so a seed still means the same bytes.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..io.images import read_image
from .appearance import random_colour

EMPTY_SCENE_PROBABILITY = 0.1  # the share of scenes with nobody (pure negatives) unless SceneConfig.empty_share says
MAX_DISTRACTORS = 4
JPEG_PROBABILITY, JPEG_QUALITY = 0.6, (30, 90)
RESOLUTION_LOSS_PROBABILITY, RESOLUTION_SCALE = 0.25, (0.35, 0.8)
MOTION_BLUR_PROBABILITY, MOTION_BLUR_LENGTH = 0.15, (3, 9)
GREY_PROBABILITY = 0.05


def jitter_colours(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 0..1 with random brightness, contrast, saturation and hue shift."""
    hsv = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-18, 18)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.4), 0, 1)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.6, 1.3)
    return np.clip(out, 0, 1).astype(np.float32)


def add_distractors(rng: np.random.Generator, image: np.ndarray, photos: list[Path]) -> np.ndarray:
    """Draw 0..MAX_DISTRACTORS objects over a (H, W, 3) float32 background: shaded blobs with
    clothing-like stripes or checks, upright capsules, and cut-outs of real photographs."""
    out = image.copy()
    for _ in range(int(rng.integers(0, MAX_DISTRACTORS + 1))):
        kind = int(rng.integers(3))
        if kind == 2 and not photos:
            kind = 0
        mask, shading = _capsule(rng, out.shape[:2]) if kind == 1 else _blob(rng, out.shape[:2])
        if kind == 2:
            texture = _photo_patch(rng, photos[int(rng.integers(len(photos)))], out.shape[:2])
            texture = texture * (0.7 + 0.3 * shading[..., None])
        else:
            texture = _pattern(rng, out.shape[:2]) * (0.25 + 0.85 * shading[..., None])
        alpha = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 1.5))[..., None]
        out = out * (1 - alpha) + np.clip(texture, 0, 1) * alpha
    return out.astype(np.float32)


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A camera's and an encoder's defects on a finished (H, W, 3) uint8 RGB image."""
    out = image.astype(np.float32) * np.clip(rng.normal(1.0, 0.06, 3), 0.85, 1.15).astype(np.float32)
    h, w = out.shape[:2]
    if rng.random() < RESOLUTION_LOSS_PROBABILITY:
        scale = rng.uniform(*RESOLUTION_SCALE)
        small = cv2.resize(out, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < MOTION_BLUR_PROBABILITY:
        length = int(rng.integers(MOTION_BLUR_LENGTH[0], MOTION_BLUR_LENGTH[1] + 1))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0
        rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rotation, (length, length))
        out = cv2.filter2D(out, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < GREY_PROBABILITY:
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < JPEG_PROBABILITY:
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(out[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out


def _blob(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An ellipse or a random polygon: (mask, shading) float32 (H, W), shading 1 at the lit centre."""
    h, w = shape
    side = min(h, w)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    rx, ry = side * rng.uniform(0.04, 0.3), side * rng.uniform(0.04, 0.3)
    mask = np.zeros(shape, np.float32)
    if rng.random() < 0.5:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), rng.uniform(0, 180), 0, 360, 1.0, -1)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        radii = rng.uniform(0.5, 1.0, len(angles))
        points = np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [points.astype(np.int32)], 1.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    light = rng.normal(0, 0.4, 2)
    r2 = ((xs - cx) / max(rx, 1) - light[0]) ** 2 + ((ys - cy) / max(ry, 1) - light[1]) ** 2
    return mask, np.sqrt(np.clip(1 - r2 / 4, 0, 1)).astype(np.float32)


def _capsule(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An upright (slightly tilted) capsule, lit like a cylinder: a pole, a bottle, a lamp."""
    h, w = shape
    length = h * rng.uniform(0.15, 0.9)
    radius = max(2.0, length * rng.uniform(0.04, 0.2))
    x0, y0 = rng.uniform(0, w), rng.uniform(-0.2 * h, h)
    tilt = rng.normal(0, 0.15)
    x1, y1 = x0 + np.sin(tilt) * length, y0 + np.cos(tilt) * length
    mask = np.zeros(shape, np.float32)
    cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 1.0, int(2 * radius))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    across = ((xs - x0) * np.cos(tilt) - (ys - y0) * np.sin(tilt)) / radius  # -1..1 across the capsule
    lit = rng.uniform(-0.5, 0.5)
    return mask, np.sqrt(np.clip(1 - (across - lit) ** 2 / 2.25, 0, 1)).astype(np.float32)


def _pattern(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) solid, striped or checked colours (clothing-like)."""
    h, w = shape
    first, second = random_colour(rng), random_colour(rng)
    kind = int(rng.integers(3))
    if kind == 0:
        weight = np.zeros(shape, np.float32)
    else:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        period = min(h, w) * rng.uniform(0.01, 0.08)
        angle = rng.uniform(0, np.pi)
        along = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        if kind == 1:
            weight = (np.floor(along) % 2).astype(np.float32)
        else:
            across = (-xs * np.sin(angle) + ys * np.cos(angle)) / period
            weight = ((np.floor(along) + np.floor(across)) % 2).astype(np.float32)
    return (first[None, None] * (1 - weight[..., None]) + second[None, None] * weight[..., None]).astype(np.float32)


def _photo_patch(rng: np.random.Generator, path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A random crop of a photograph, resized to (H, W, 3) float32 0..1."""
    pixels = read_image(path)
    ph, pw = pixels.shape[:2]
    side = max(4, int(min(ph, pw) * rng.uniform(0.2, 0.8)))
    y0, x0 = int(rng.integers(0, ph - side + 1)), int(rng.integers(0, pw - side + 1))
    crop = pixels[y0:y0 + side, x0:x0 + side]
    return cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
