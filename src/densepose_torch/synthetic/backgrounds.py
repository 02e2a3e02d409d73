"""Real photographs without people, bundled by Python packages, as backgrounds of synthetic scenes.

`backgrounds: scikit-image` (config) or `densepose synth --backgrounds scikit-image` uses the
images below from scikit-image's own data folder (installed by the `[train]` extra; found
without importing the package). Each was chosen because it shows no person, no face and no
human figure, and because its licence (as scikit-image's documentation states it) lets anyone
use it: the two excluded photographs of that folder are `astronaut` and `camera` (people), the
others are not photographs or carry no stated licence.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import DensePoseError

SCIKIT_IMAGE = "scikit-image"
INSTALL_HINT = "the scikit-image backgrounds need scikit-image: pip install 'densepose-torch[train]'"


@dataclass(frozen=True)
class BundledPhoto:
    file_name: str
    shows: str
    licence: str


SCIKIT_IMAGE_PHOTOS = (
    BundledPhoto("brick.png", "a brick wall", "CC0 (CC0Textures)"),
    BundledPhoto("chelsea.png", "a cat on a floor", "CC0 (Stefan van der Walt)"),
    BundledPhoto("clock_motion.png", "a wall clock, motion-blurred", "public domain (Stefan van der Walt)"),
    BundledPhoto("coffee.png", "a coffee cup on a wooden table", "CC0 (Rachel Michetti)"),
    BundledPhoto("coins.png", "Greek coins on a grey ground", "no known copyright restrictions (Brooklyn Museum)"),
    BundledPhoto("grass.png", "grass", "CC0 (DeviantArt, linolafett)"),
    BundledPhoto("gravel.png", "gravel", "CC0 (CC0Textures)"),
    BundledPhoto("hubble_deep_field.jpg", "galaxies (Hubble eXtreme Deep Field)", "public domain (NASA)"),
    BundledPhoto("ihc.png", "stained tissue under a microscope", "no known copyright restrictions (CMMI)"),
    BundledPhoto("retina.jpg", "a fundus photograph of a retina", "CC0 (Mikael Häggström)"),
    BundledPhoto("rocket.jpg", "a rocket launch against the sky", "public domain (SpaceX)"),
    BundledPhoto("text.png", "printed letters and shapes", "public domain (Wikipedia)"),
)


def scikit_image_data_folder() -> Path | None:
    """scikit-image's bundled data folder, located without importing the package; None when it
    is not installed."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        data = Path(folder) / "data"
        if data.is_dir():
            return data
    return None


def bundled_backgrounds(name: str) -> list[Path]:
    """The image files of a named set of bundled photographs (only `scikit-image` exists)."""
    if name != SCIKIT_IMAGE:
        raise DensePoseError(f"unknown background set {name!r} (known: {SCIKIT_IMAGE})")
    folder = scikit_image_data_folder()
    if folder is None:
        raise DensePoseError(INSTALL_HINT)
    paths = [folder / photo.file_name for photo in SCIKIT_IMAGE_PHOTOS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DensePoseError(f"scikit-image's data folder {folder} lacks {', '.join(missing)}; reinstall scikit-image")
    return paths
