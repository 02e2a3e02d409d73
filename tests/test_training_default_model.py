"""The embedded default model: shipped inside the package, loaded by load_model() with no
argument, and it finds synthetic people it never saw. (Its held-out figures are measured with
`densepose train configs/default_model.yaml --eval-only`, see docs/training.md.)"""
from __future__ import annotations

import dataclasses
import importlib.resources

import pytest

from densepose_torch import DensePoseError, Predictor, load_model
from densepose_torch import checkpoint as checkpoint_module
from densepose_torch.synthetic import SceneGenerator
from densepose_torch.training.config import load_train_config

from .test_training import REPO


def test_the_default_model_is_small_and_matches_its_config():
    asset = importlib.resources.files("densepose_torch.assets") / checkpoint_module.DEFAULT_MODEL_FILE
    assert asset.is_file() and asset.stat().st_size <= 20 * 1024 * 1024
    model = load_model()
    assert model.name == "default" and not model.training
    # Trained on synthetic data alone, it predicts the synthetic body's charts (the trainer records it).
    assert model.config == dataclasses.replace(load_train_config(REPO / "configs" / "default_model.yaml").model, chart_body="synthetic")


def test_the_three_stages_chain_and_share_one_model():
    stages = [load_train_config(REPO / "configs" / name).to_dict()
              for name in ("default_model_stage1.yaml", "default_model_stage2.yaml", "default_model.yaml")]
    assert [stage["init_weights"] for stage in stages] == [None, "configs/default_model_stage1.yaml", "configs/default_model_stage2.yaml"]
    assert len({stage["output"] for stage in stages}) == 3
    # Each stage starts from the previous one's weights: a model changed on the way would keep
    # only the tensors that still fit.
    assert all(stage["model"] == stages[0]["model"] for stage in stages)
    # Stage 3 trains on dense truth of photo-like scenes over real backgrounds, empty scenes kept,
    # and is evaluated on held-out scenes of the same look.
    (photo,) = stages[2]["data"]["train"]
    assert photo["dense"] and photo["keep_empty"]
    assert photo["synthetic"]["look"] == "photo" and photo["synthetic"]["backgrounds"] == "scikit-image"
    held_out = stages[2]["data"]["val"]["synthetic"]
    assert held_out["look"] == "photo" and held_out["seed"] != photo["synthetic"]["seed"]


def test_the_default_model_finds_unseen_synthetic_people():
    # Seed 999 is neither in the training set (seed 0) nor in the held-out set (seed 1).
    hits = 0
    for index in range(3):
        scene = SceneGenerator(256).render((999, index))
        result = Predictor(load_model())(scene.image).above(0.5)
        body = scene.instance > 0
        predicted = result.to_dense().I > 0
        if body.sum() > 500 and len(result):
            iou = (body & predicted).sum() / (body | predicted).sum()
            hits += iou > 0.5  # a random-weight model scores about 0
    assert hits >= 2


def test_a_missing_default_model_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(checkpoint_module, "DEFAULT_MODEL_FILE", "no_such_model.pth")
    with pytest.raises(DensePoseError, match="--model"):
        load_model()
