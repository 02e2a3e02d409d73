"""The embedded default model: shipped inside the package, loaded by load_model() with no
argument, and it finds synthetic people it never saw. (Its held-out figures come from
benchmarks/default_model_card.py, see the README's model card.)"""
from __future__ import annotations

import dataclasses
import importlib.resources

import pytest

from densepose_torch import DensePoseError, Predictor, load_model
from densepose_torch import checkpoint as checkpoint_module
from densepose_torch.synthetic import SceneGenerator
from densepose_torch.training.config import load_train_config

from .test_training import REPO

TEST_TIME_SETTINGS = ("box_vote_iou", "test_flip")  # how the model is run, not what it holds

def test_the_default_model_is_small_and_matches_its_config():
    asset = importlib.resources.files("densepose_torch.assets") / checkpoint_module.DEFAULT_MODEL_FILE
    assert asset.is_file() and asset.stat().st_size <= 20 * 1024 * 1024
    model = load_model()
    assert model.name == "default" and not model.training
    # Trained on synthetic data alone, it predicts the synthetic body's charts (the trainer records it).
    assert model.config == dataclasses.replace(load_train_config(REPO / "configs" / "default_model.yaml").model, chart_body="synthetic")


def test_the_stages_chain_share_one_model_but_the_grown_head_and_end_in_a_mean():
    names = ("default_model_stage1.yaml", "default_model_stage2.yaml", "default_model_stage3.yaml",
             "default_model_stage4a.yaml", "default_model_stage4b.yaml")
    stages = [load_train_config(REPO / "configs" / name).to_dict() for name in names]
    starts = [None, "default_model_stage1.yaml", "default_model_stage2.yaml", "default_model_stage3.yaml", "default_model_stage3.yaml"]
    assert [stage["init_weights"] for stage in stages] == [name and f"configs/{name}" for name in starts]
    final = load_train_config(REPO / "configs" / "default_model.yaml").to_dict()
    # The embedded model is the mean of the two stage-4 runs, which start from stage 3 alike.
    assert final["average_of"] == [f"configs/{name}" for name in names[3:]] and final["init_weights"] is None
    assert len({stage["output"] for stage in stages + [final]}) == 6
    # Each stage starts from the previous one's weights: a model changed on the way would keep
    # only the tensors that still fit, unless the change is a DensePose head grown in place
    # (stage 4 also turns on box voting and the test-time flip, settings without weights).
    assert all(stage["model"] == stages[0]["model"] for stage in stages[:3])
    assert stages[3]["model"] == stages[4]["model"] == final["model"]
    assert [stage["grow_head"] for stage in stages] == [False, False, False, True, True]
    grown = {key: value for key, value in stages[3]["model"].items() if stages[0]["model"][key] != value and key not in TEST_TIME_SETTINGS}
    assert grown and set(grown) <= {"head_channels", "head_convs"}
    assert all(grown[key] >= stages[0]["model"][key] for key in grown)
    # Stages 3, 4a and 4b train on dense truth of photo-like scenes over real backgrounds, empty
    # scenes kept, each on a set of its own seed; stage 3 is evaluated on held-out scenes of the
    # same look, of another seed again.
    photo_sets = [stage["data"]["train"] for stage in stages[2:]]
    assert all(len(sets) == 1 for sets in photo_sets)
    for (data,) in photo_sets:
        assert data["dense"] and data["keep_empty"]
        assert data["synthetic"]["look"] == "photo" and data["synthetic"]["backgrounds"] == "scikit-image"
    held_out = stages[2]["data"]["val"]["synthetic"]
    assert held_out["look"] == "photo"
    assert len({held_out["seed"]} | {data["synthetic"]["seed"] for (data,) in photo_sets}) == 4


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
