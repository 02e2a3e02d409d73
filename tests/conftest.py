"""Shared test fixtures."""
from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from .shared import shared_path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return shared_path("golden")


def _make_weights_module():
    spec = importlib.util.spec_from_file_location("golden_make_weights", shared_path("golden", "make_weights.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory):
    """Factory: path of a model-zoo style .pkl with the golden weights of an architecture, made
    once per session with the generator that produced detectron2's reference outputs."""
    made: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("golden_weights")

    def make(name: str) -> Path:
        if name not in made:
            generator = _make_weights_module()
            keys = json.loads(shared_path("golden", "keys", f"{name}.json").read_text())
            overrides = dict(np.load(shared_path("golden", "overrides", f"{name}.npz")))
            state = generator.make_state_dict(keys, 0, overrides)
            path = folder / f"{name}.pkl"
            with open(path, "wb") as handle:
                pickle.dump({"model": state, "__author__": "golden weights"}, handle)
            made[name] = path
        return made[name]

    return make
