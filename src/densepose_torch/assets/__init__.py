"""Files shipped inside the package.

`astronaut.png`: Eileen Collins, NASA astronaut, 512x512 RGB, from scikit-image's sample data
(`skimage.data.astronaut`; NASA Great Images database, public domain, no known copyright
restrictions). It is the same picture as the `astronaut` case of the detectron2 golden outputs.
"""
from __future__ import annotations

from pathlib import Path

EXAMPLE_IMAGE = "astronaut.png"


def example_image_path() -> Path:
    """Path of the bundled example photo (one person, public domain)."""
    return Path(__file__).resolve().with_name(EXAMPLE_IMAGE)
