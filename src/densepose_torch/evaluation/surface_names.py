"""Body surfaces by the names `densepose evaluate --surface`, `densepose compare --surface` and
training configs use: official, official:DIR, synthetic and none."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DensePoseError
from .official_data import download_official_data, load_official_surface


def surface_for(dataset: dict, spec: str | None) -> str:
    """The surface to evaluate a ground truth with: `spec` if given, else "synthetic" for sets
    `densepose synth` wrote (said on stderr), else "official"."""
    if spec is not None:
        return spec
    from ..synthetic.dataset import is_synthetic

    if is_synthetic(dataset):
        print("densepose: the ground truth was written by `densepose synth`: GPS uses its synthetic body surface "
              "(--surface chooses another)", file=sys.stderr)
        return "synthetic"
    return "official"


def resolve_surface(spec: str):
    """The body surface (a BodySurface) a name means (None for "none")."""
    if spec == "none":
        return None
    if spec == "official":
        return load_official_surface(download_official_data())
    if spec.startswith("official:"):
        return load_official_surface(Path(spec.split(":", 1)[1]).expanduser())
    if spec == "synthetic":
        try:
            from ..synthetic.surface import load_surface
        except ImportError:
            raise DensePoseError("the synthetic anny surface is not available in this installation; use --surface official") from None
        return load_surface()
    raise DensePoseError(f"unknown --surface {spec!r}: use official, official:DIR, synthetic or none")
