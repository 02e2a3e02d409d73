"""Shared test fixtures."""
from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

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


@pytest.fixture(scope="session")
def tiny_synthetic_set(tmp_path_factory) -> Path:
    """A 6-image, 96 px synthetic DensePose-COCO set on disk (about a second to render)."""
    from densepose_torch.synthetic.dataset import SynthJob, write_dataset

    out = tmp_path_factory.mktemp("tiny_synth")
    write_dataset(SynthJob(out=out, seed=0, size=96, num_points=60), 6, workers=1, progress=False)
    return out


@pytest.fixture
def one_torch_thread():
    """Training-sized steps run as fast on one thread, and two spin-wait badly on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
