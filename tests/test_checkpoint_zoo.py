"""The zoo registry and checkpoint formats: architectures match detectron2's checkpoint format,
every on-disk format loads, and wrong checkpoints fail with a message naming the mismatch."""
from __future__ import annotations

import dataclasses
import json
import pickle
import re

import numpy as np
import pytest
import torch

from densepose_torch import DensePoseError, ModelConfig, load_model, save_checkpoint
from densepose_torch.checkpoint import convert_caffe2_names, infer_architecture, read_state_dict, zoo_checkpoint_path
from densepose_torch.modeling import DensePoseRCNN, build_model
from densepose_torch.zoo import ZOO, architecture_from_name, get_zoo_model

from .shared import shared_path

# detectron2-built models of each family: (state-dict tensors, elements), as detectron2 saves them.
FAMILY_SIZES = {
    "R_50_FPN_s1x_legacy": (319, 59_837_487),
    "R_101_FPN_s1x_legacy": (574, 78_881_839),
    "R_50_FPN_s1x": (335, 63_927_330),
    "R_101_FPN_s1x": (590, 82_971_682),
    "R_50_FPN_DL_s1x": (359, 66_162_210),
    "R_101_FPN_DL_s1x": (614, 85_206_562),
    "R_50_FPN_WC1_s1x": (337, 64_132_155),
    "R_50_FPN_WC2_s1x": (341, 64_541_805),
    "R_50_FPN_DL_WC1_s1x": (361, 66_367_035),
    "R_50_FPN_DL_WC2_s1x": (365, 66_776_685),
    "R_101_FPN_WC1_s1x": (592, 83_176_507),
    "R_101_FPN_WC2_s1x": (596, 83_586_157),
    "R_101_FPN_DL_WC1_s1x": (616, 85_411_387),
    "R_101_FPN_DL_WC2_s1x": (620, 85_821_037),
    "R_50_FPN_WC1M_s1x": (341, 64_148_541),
    "R_50_FPN_WC2M_s1x": (345, 64_558_191),
    "R_50_FPN_DL_WC1M_s1x": (365, 66_383_421),
    "R_50_FPN_DL_WC2M_s1x": (369, 66_793_071),
    "R_101_FPN_WC1M_s1x": (596, 83_192_893),
    "R_101_FPN_WC2M_s1x": (600, 83_602_543),
    "R_101_FPN_DL_WC1M_s1x": (620, 85_427_773),
    "R_101_FPN_DL_WC2M_s1x": (624, 85_837_423),
}

TINY = ModelConfig(depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64, min_size_test=64, max_size_test=96)


def meta_state(config: ModelConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return DensePoseRCNN(config).state_dict()


def test_zoo_has_the_27_models_with_unique_ids():
    assert len(ZOO) == 27
    assert len({m.name for m in ZOO}) == 27 and len({m.model_id for m in ZOO}) == 27
    for model in ZOO:
        assert re.fullmatch(r"[0-9a-f]{6}", model.md5_prefix)
        assert model.url.endswith(f"/{model.model_id}/model_final_{model.md5_prefix}.pkl")
        assert model.url.startswith("https://dl.fbaipublicfiles.com/densepose/")
        assert (model.metrics.gps_apex is not None) == model.evolution


@pytest.mark.parametrize("model", ZOO, ids=lambda m: m.name)
def test_zoo_architecture_has_detectron2_checkpoint_layout(model):
    family = re.sub(r"_3x_Atop10P_CA.*", "_s1x", model.name)
    tensors, elements = FAMILY_SIZES[family]
    state = meta_state(model.architecture)
    assert len(state) == tensors
    assert sum(t.numel() for t in state.values()) == elements


def test_golden_key_lists_equal_our_state_dicts(golden_dir):
    for keys_file in sorted((golden_dir / "keys").glob("*.json")):
        expected = json.loads(keys_file.read_text())
        state = meta_state(get_zoo_model(keys_file.stem).architecture)
        assert {k: list(v.shape) for k, v in state.items()} == expected, keys_file.stem


def test_evolution_models_pool_boxes_with_roialignv2():
    for model in ZOO:
        config = model.architecture
        assert (config.box_pooler_aligned, config.box_pooler_sampling_ratio) == ((True, 0) if model.evolution else (False, 2))
    legacy = architecture_from_name("R_101_FPN_s1x_legacy")
    assert (legacy.depth, legacy.decoder, legacy.pooler_resolution, legacy.coarse_segm_channels) == (101, False, 14, 15)
    wc2m = architecture_from_name("R_50_FPN_DL_WC2M_s1x")
    assert (wc2m.densepose_head, wc2m.uv_confidence, wc2m.segm_confidence) == ("deeplab", "indep_aniso", True)


@pytest.mark.parametrize("query", ["R_50_FPN_s1x", "densepose_rcnn_R_50_FPN_s1x", "densepose_rcnn_R_50_FPN_s1x.yaml", "model_final_162be9.pkl", "165712039"])
def test_zoo_lookup_by_any_name(query):
    assert get_zoo_model(query).name == "R_50_FPN_s1x"


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(DensePoseError, match="did you mean R_50_FPN_s1x"):
        get_zoo_model("R50_FPN_s1x")


@pytest.mark.parametrize("model", [ZOO[0], ZOO[22]], ids=lambda m: m.name)
def test_infer_architecture_from_keys(model):
    inferred = infer_architecture(meta_state(model.architecture))
    # Keys cannot tell the Atop10P box pooler apart; everything else must come back.
    expected = dataclasses.replace(model.architecture, box_pooler_aligned=False, box_pooler_sampling_ratio=2)
    assert inferred == expected


def _random_state(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    return {k: generator.normal(0, 0.1, tuple(v.shape)).astype(np.float32) for k, v in build_model(config).state_dict().items()}


def test_model_zoo_pickle_loads_strictly_with_extra_buffers(tmp_path):
    state = _random_state(TINY)
    state["pixel_mean"] = np.zeros((3, 1, 1), np.float32)
    state["proposal_generator.anchor_generator.cell_anchors.0"] = np.zeros((3, 4), np.float32)
    path = tmp_path / "tiny.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "test"}))
    model = load_model(path, config=TINY)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key])


def test_own_checkpoint_round_trip_records_the_architecture(tmp_path):
    model = build_model(TINY, "tiny")
    path = save_checkpoint(model, tmp_path / "tiny.pth", iteration=5)
    loaded = load_model(path)
    assert loaded.config == TINY
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert torch.load(path, weights_only=True)["iteration"] == 5


def test_detectron2_training_checkpoint_loads(tmp_path):
    state = {k: torch.from_numpy(v) for k, v in _random_state(TINY).items()}
    path = tmp_path / "model_final.pth"
    torch.save({"model": state, "iteration": 100, "optimizer": {}}, path)
    assert load_model(path, config=TINY).config == TINY


def test_wrong_checkpoint_names_the_first_mismatches(golden_checkpoint):
    legacy_file = golden_checkpoint("R_50_FPN_s1x_legacy")
    with pytest.raises(DensePoseError) as error:
        load_model(legacy_file, config="R_50_FPN_s1x")
    message = str(error.value)
    assert "roi_heads.densepose_predictor.ann_index_lowres.weight: checkpoint (512, 15, 4, 4) vs model (512, 2, 4, 4)" in message
    assert "missing, first roi_heads.decoder." in message
    assert "\n" not in message


def _caffe2_blobs(config: ModelConfig) -> dict[str, np.ndarray]:
    """A Detectron (Caffe2) blob dict for a legacy architecture, named as Detectron names blobs."""
    blobs = {}
    generator = np.random.default_rng(3)
    for key, value in build_model(config).state_dict().items():
        name = key.replace("backbone.bottom_up.", "").replace("backbone.", "").replace("roi_heads.densepose_head.", "")
        name = name.replace("roi_heads.densepose_predictor.", "").replace("roi_heads.box_head.fc1", "fc6").replace("roi_heads.box_head.fc2", "fc7")
        name = name.replace("roi_heads.box_predictor.", "").replace("proposal_generator.rpn_head.conv", "conv_rpn_fpn2")
        name = name.replace("proposal_generator.rpn_head.objectness_logits", "rpn_cls_logits_fpn2")
        name = name.replace("proposal_generator.rpn_head.anchor_deltas", "rpn_bbox_pred_fpn2")
        name = re.sub(r"fpn_lateral(\d)", lambda m: f"fpn_inner_res{m.group(1)}_0_sum_lateral" if m.group(1) != "5" else "fpn_inner_res5_2_sum", name)
        name = re.sub(r"fpn_output(\d)", lambda m: f"fpn_res{m.group(1)}_0_sum", name)
        name = name.replace("stem.conv1.norm.weight", "res_conv1_bn_s").replace("stem.conv1.norm.bias", "res_conv1_bn_b").replace("stem.conv1", "conv1")
        name = name.replace(".shortcut", "_branch1").replace(".conv1", "_branch2a").replace(".conv2", "_branch2b").replace(".conv3", "_branch2c")
        name = name.replace("ann_index_lowres", "AnnIndex_lowres").replace("index_uv_lowres", "Index_UV_lowres")
        name = name.replace("u_lowres", "U_lowres").replace("v_lowres", "V_lowres")
        name = name.replace(".norm.weight", "_bn_s").replace(".norm.bias", "_bn_b").replace(".weight", "_w").replace(".bias", "_b").replace(".", "_")
        if "running" in name:
            continue  # Caffe2's AffineChannel has no statistics
        array = generator.normal(0, 0.1, tuple(value.shape)).astype(np.float32)
        if name.startswith("bbox_pred"):
            array = np.concatenate([np.zeros((4,) + array.shape[1:], np.float32), array])  # + background box
        elif name.startswith("cls_score"):
            array = np.concatenate([array[-1:], array[:-1]])  # background first
        blobs[name] = array
    blobs["conv1_w_momentum"] = np.zeros(1, np.float32)
    return blobs


def test_caffe2_detectron_pickle_loads_as_legacy(tmp_path):
    config = dataclasses.replace(architecture_from_name("R_50_FPN_s1x_legacy"), depth=18, fpn_channels=32, head_channels=32, head_convs=2, box_fc_dim=64)
    blobs = _caffe2_blobs(config)
    converted = convert_caffe2_names(blobs)
    assert "res2.0.conv1.weight" in converted and "stem.conv1.norm.weight" in converted
    assert "fpn_lateral5.weight" in converted and "fpn_output2.weight" in converted
    assert converted["cls_score.weight"].shape[0] == 2 and converted["bbox_pred.weight"].shape[0] == 4
    np.testing.assert_array_equal(converted["cls_score.bias"][-1], blobs["cls_score_b"][0])  # background moved last
    path = tmp_path / "DensePose_ResNet18_FPN_s1x-e2e.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    state, recorded, kind = read_state_dict(path)
    assert kind == "caffe2" and recorded is None
    model = load_model(path, config=config)
    loaded = model.state_dict()
    np.testing.assert_array_equal(loaded["roi_heads.densepose_predictor.u_lowres.weight"].numpy(), blobs["U_lowres_w"])
    np.testing.assert_array_equal(loaded["roi_heads.densepose_predictor.index_uv_lowres.weight"].numpy(), blobs["Index_UV_lowres_w"])
    np.testing.assert_array_equal(loaded["backbone.bottom_up.res3.0.shortcut.norm.weight"].numpy(), blobs["res3_0_branch1_bn_s"])
    # Statistics Caffe2 never stored take detectron2's fill values.
    assert torch.equal(loaded["backbone.bottom_up.res2.0.conv1.norm.running_var"], torch.ones(64))


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps([1, 2, 3])])
def test_unreadable_checkpoints_fail_in_one_line(tmp_path, content):
    path = tmp_path / "broken.pkl"
    path.write_bytes(content)
    with pytest.raises(DensePoseError) as error:
        load_model(path)
    assert "\n" not in str(error.value)


def test_missing_file_and_zoo_weights_without_network(tmp_path, monkeypatch):
    with pytest.raises(DensePoseError, match="no such checkpoint file"):
        load_model(tmp_path / "nothing.pkl")
    monkeypatch.setenv("DENSEPOSE_TORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    target = zoo_checkpoint_path(get_zoo_model("R_50_FPN_s1x"))
    with pytest.raises(DensePoseError) as error:
        load_model("R_50_FPN_s1x")
    assert get_zoo_model("R_50_FPN_s1x").url in str(error.value) and str(target) in str(error.value)
    assert error.value.exit_code == 2
    assert not target.exists()


def _no_network(*args, **kwargs):
    raise OSError("network is unreachable")


def test_placed_file_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEPOSE_TORCH_CACHE", str(tmp_path))
    target = zoo_checkpoint_path(get_zoo_model("R_50_FPN_s1x"))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real weights")
    with pytest.raises(DensePoseError, match="corrupt"):
        load_model("R_50_FPN_s1x")
    assert not target.exists()


def test_real_caffe2_era_annotation_file_is_readable():
    # Shared data are Python-2 pickles too: the same latin1 reading applies.
    with open(shared_path("data", "demo_dp_single_ann.pkl"), "rb") as handle:
        data = pickle.load(handle, encoding="latin1")
    assert {"ICrop", "I", "U", "V", "x", "y"} <= set(data)
