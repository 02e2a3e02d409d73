"""Which models a comparison runs: the `--models` arguments resolved to named, loadable models.

An argument is a comma list of items. An item is `all` (every zoo model whose weights are in the
cache, the embedded default model, and the other zoo models listed as skipped, since nothing is
downloaded for `all`), `default` (the embedded model), a zoo name (downloaded if missing and
the network allows), or a checkpoint path.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..checkpoint import DEFAULT_MODEL_NAME, fetch_zoo_checkpoint, load_model, zoo_checkpoint_path
from ..errors import DensePoseError
from ..inference import Precision, Predictor
from ..zoo import ZOO, ZooModel, get_zoo_model

ModelKind = Literal["zoo", "path", "default"]
DEFAULT_MODEL = DEFAULT_MODEL_NAME
CHECKPOINT_SUFFIXES = (".pkl", ".pth", ".pt")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a comparison: what the report calls it and where its weights come from."""

    name: str  # display name, unique within the comparison
    kind: ModelKind
    source: str  # zoo short name, checkpoint path, or "default"
    skip_reason: str | None = None  # known before running: why it will not run

    @property
    def zoo(self) -> ZooModel | None:
        return get_zoo_model(self.source) if self.kind == "zoo" else None


def _looks_like_path(item: str) -> bool:
    return Path(item).suffix in CHECKPOINT_SUFFIXES or os.sep in item or Path(item).exists()


def _all_models() -> list[ModelSpec]:
    specs = []
    for model in ZOO:
        cached = zoo_checkpoint_path(model)
        reason = None if cached.is_file() else (
            f"weights not downloaded (offline run): `densepose download {model.name}` puts them at {cached}")
        specs.append(ModelSpec(model.name, "zoo", model.name, reason))
    specs.append(ModelSpec(DEFAULT_MODEL, "default", DEFAULT_MODEL))
    return specs


def _unique_name(path: Path, taken: set[str]) -> str:
    """The file's stem; its parent folders are prepended while the name is taken."""
    parts = path.resolve().parts
    for depth in range(1, len(parts) + 1):
        name = "/".join((*parts[-depth:-1], path.stem))
        if name not in taken:
            return name
    return str(path.resolve())


def resolve_models(arguments: list[str]) -> list[ModelSpec]:
    """The models named by `--models` arguments, in order, each once."""
    items = [item.strip() for argument in arguments for item in argument.split(",") if item.strip()]
    if not items:
        raise DensePoseError("--models names no model: give `all`, zoo names or checkpoint paths")
    specs: list[ModelSpec] = []
    for item in items:
        if item == "all":
            specs.extend(_all_models())
        elif item == DEFAULT_MODEL:
            specs.append(ModelSpec(DEFAULT_MODEL, "default", DEFAULT_MODEL))
        elif _looks_like_path(item):
            path = Path(item).expanduser()
            if not path.is_file():
                raise DensePoseError(f"no such checkpoint file: {path}")
            specs.append(ModelSpec(path.stem, "path", str(path.resolve())))
        else:
            model = get_zoo_model(item)  # an unknown name fails here, with suggestions
            specs.append(ModelSpec(model.name, "zoo", model.name))
    unique: dict[tuple[str, str], ModelSpec] = {}
    for spec in specs:
        key = (spec.kind, spec.source)
        # An explicit name wins over `all`'s "not downloaded" entry: it may be downloaded.
        if key not in unique or (unique[key].skip_reason and not spec.skip_reason):
            unique[key] = spec
    named: list[ModelSpec] = []
    taken: set[str] = set()
    for spec in unique.values():
        name = spec.name
        if name in taken:
            name = _unique_name(Path(spec.source), taken) if spec.kind == "path" else f"{name} ({spec.kind})"
        taken.add(name)
        named.append(ModelSpec(name, spec.kind, spec.source, spec.skip_reason))
    return named


def cache_key(spec: ModelSpec, precision: str, device_type: str) -> str:
    """Name of the model's cache folder: a readable stem plus a digest of everything that
    changes its results or timings (weights file identity, precision, device type)."""
    identity: list = [spec.kind, spec.source, precision, device_type]
    if spec.kind == "path":
        stat = os.stat(spec.source)
        identity += [stat.st_size, stat.st_mtime_ns]
    if spec.kind == "default":
        from .. import __version__

        identity.append(__version__)
    digest = hashlib.sha1(json.dumps(identity).encode("utf-8")).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec.source).stem if spec.kind == "path" else spec.source)
    return f"{stem}-{digest}"


def weights_path(spec: ModelSpec) -> Path | None:
    """The checkpoint file of a model, downloading a named zoo model if it is not cached (None
    for the embedded model). Raises DensePoseError when the weights cannot be had."""
    if spec.kind == "zoo":
        return fetch_zoo_checkpoint(get_zoo_model(spec.source))
    if spec.kind == "path":
        return Path(spec.source)
    return None


def load_predictor(
    spec: ModelSpec, weights: Path | None, device: str, precision: Precision, trust_checkpoint: bool = False
) -> Predictor:
    """A Predictor of the model on `device` (what the comparison times as "load");
    `trust_checkpoint` as in `load_model`."""
    if spec.kind == "zoo":
        model = load_model(weights, config=spec.source, device=device, trust_checkpoint=trust_checkpoint)
    else:
        model = load_model(weights, device=device, trust_checkpoint=trust_checkpoint)
    return Predictor(model, device=device, precision=precision)
