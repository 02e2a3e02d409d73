"""Reading and writing DensePose R-CNN weights, and `load_model`, the way in.

Three on-disk formats load: detectron2 model-zoo pickles (`{"model": {name: ndarray},
"__author__": ...}`), training checkpoints saved with torch (`{"model": state_dict, ...}`, ours
add the architecture under "config"), and Caffe2-era Detectron pickles (blob names, renamed as
detectron2 renames them). Loading is strict: a checkpoint that does not fit the architecture
fails with the first mismatching keys and shapes.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ModelConfig
from .errors import DensePoseError
from .io.atomic import atomic_write
from .io.download import cache_dir, cached_download
from .io.safe_pickle import UnsafePickleError, safe_load
from .modeling import DensePoseRCNN, build_model
from .zoo import ZOO, ZooModel, architecture_from_name, get_zoo_model

CHECKPOINT_FORMAT = "densepose-torch/1"
DEFAULT_MODEL_FILE = "default_model.pth"  # in densepose_torch/assets
DEFAULT_MODEL_NAME = "default"  # what --model accepts for it, as `densepose compare --models` does
# Buffers some detectron2 versions saved that the architecture does not need.
_IGNORED_KEYS = re.compile(r"^(pixel_mean|pixel_std)$|anchor_generator\.cell_anchors")


def read_state_dict(
    path: str | os.PathLike, trust_checkpoint: bool = False
) -> tuple[dict[str, torch.Tensor], ModelConfig | None, str]:
    """(state dict with detectron2 names, the architecture if the file records it, the format:
    "detectron2", "densepose-torch" or "caffe2"). Nothing in the file runs unless
    `trust_checkpoint` (see `load_model`)."""
    path = Path(path)
    if not path.is_file():
        raise DensePoseError(f"no such checkpoint file: {path}")
    data = _unpickle(path, trust_checkpoint)
    if not isinstance(data, dict):
        raise DensePoseError(f"{path} is not a DensePose checkpoint (it holds a {type(data).__name__})")
    if "model" in data and isinstance(data["model"], dict):
        config = ModelConfig.from_dict(data["config"]) if isinstance(data.get("config"), dict) else None
        kind = "densepose-torch" if data.get("format") == CHECKPOINT_FORMAT else "detectron2"
        state = data["model"]
    else:
        blobs = data.get("blobs", data)
        state, kind, config = convert_caffe2_names(blobs), "caffe2", None
    tensors = {}
    for key, value in state.items():
        if _IGNORED_KEYS.search(key):
            continue
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise DensePoseError(f"{path}: entry {key!r} is a {type(value).__name__}, not an array")
        tensors[key] = value.float() if value.is_floating_point() else value
    return tensors, config, kind


def _unpickle(path: Path, trust_checkpoint: bool) -> Any:
    """The file's content: torch.save files through torch's weights-only loader, pickles through
    io.safe_pickle (arrays, dicts, lists, strings, numbers), neither of which runs code from the
    file. `trust_checkpoint` loads with plain pickle instead, which runs whatever the file says."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    try:
        if head.startswith(b"PK"):  # torch.save's zip container
            return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1") if trust_checkpoint else safe_load(handle)
    except (UnsafePickleError, pickle.UnpicklingError) as error:
        if trust_checkpoint or not _needs_trust(error):
            raise DensePoseError(f"cannot read checkpoint {path}: {_one_line(error)}") from None
        raise DensePoseError(
            f"{path} holds more than weights ({_one_line(error)}), and loading it would run code from the file; "
            "if you trust where it came from, load it with trust_checkpoint=True (--trust-checkpoint)"
        ) from None
    except (EOFError, RuntimeError, ValueError, ModuleNotFoundError, AttributeError, TypeError) as error:
        raise DensePoseError(f"cannot read checkpoint {path}: {type(error).__name__}: {_one_line(error)}") from None


def _needs_trust(error: Exception) -> bool:
    """Whether a refused load failed on a global the safe loaders do not admit (rather than on a
    broken file)."""
    return isinstance(error, UnsafePickleError) or "weights_only" in str(error).lower() or "global" in str(error).lower()


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    if isinstance(error, UnsafePickleError):
        return str(error)
    first = text.splitlines()[0] if text else type(error).__name__
    # torch's weights-only refusal names the global on a later line: keep that part.
    unsupported = re.search(r"GLOBAL ([\w.]+)", text)
    if unsupported:
        return f"it names {unsupported.group(1)}, which the weights-only loader does not admit"
    return first[:300]


# Caffe2 / Detectron blob names -> detectron2 names, applied in this order (detectron2's
# c2_model_loading rules restricted to what DensePose R-CNN contains).
_C2_RULES: tuple[tuple[str, str], ...] = (
    (r"\.b$", ".bias"),
    (r"\.w$", ".weight"),
    (r"bn\.s$", "norm.weight"),
    (r"bn\.bias$", "norm.bias"),
    (r"bn\.rm", "norm.running_mean"),
    (r"bn\.running\.mean$", "norm.running_mean"),
    (r"bn\.riv$", "norm.running_var"),
    (r"bn\.running\.var$", "norm.running_var"),
    (r"bn\.gamma$", "norm.weight"),
    (r"bn\.beta$", "norm.bias"),
    (r"gn\.s$", "norm.weight"),
    (r"gn\.bias$", "norm.bias"),
    (r"^res\.conv1\.norm\.", "conv1.norm."),
    (r"^conv1\.", "stem.conv1."),
    (r"\.branch1\.", ".shortcut."),
    (r"\.branch2a\.", ".conv1."),
    (r"\.branch2b\.", ".conv2."),
    (r"\.branch2c\.", ".conv3."),
    (r"^body.conv.fcn", "body_conv_fcn"),
    (r"AnnIndex\.lowres", "ann_index_lowres"),
    (r"Index\.UV\.lowres", "index_uv_lowres"),
    (r"U\.lowres", "u_lowres"),
    (r"V\.lowres", "v_lowres"),
    (r"conv\.rpn\.fpn2", "proposal_generator.rpn_head.conv"),
    (r"conv\.rpn", "proposal_generator.rpn_head.conv"),
    (r"rpn\.bbox\.pred\.fpn2", "proposal_generator.rpn_head.anchor_deltas"),
    (r"rpn\.cls\.logits\.fpn2", "proposal_generator.rpn_head.objectness_logits"),
    (r"rpn\.bbox\.pred", "proposal_generator.rpn_head.anchor_deltas"),
    (r"rpn\.cls\.logits", "proposal_generator.rpn_head.objectness_logits"),
    (r"^bbox\.pred", "bbox_pred"),
    (r"^cls\.score", "cls_score"),
    (r"^fc6\.", "box_head.fc1."),
    (r"^fc7\.", "box_head.fc2."),
    (r"^head\.conv", "box_head.conv"),
)


def _c2_fpn_name(name: str) -> str:
    parts = name.split(".")
    norm = ".norm" if "norm" in parts else ""
    if name.startswith("fpn.inner."):  # fpn.inner.res4.5.sum.lateral.weight
        return f"fpn_lateral{int(parts[2][3:])}{norm}.{parts[-1]}"
    if name.startswith("fpn.res"):  # fpn.res4.5.sum.weight
        return f"fpn_output{int(parts[1][3:])}{norm}.{parts[-1]}"
    return name


def convert_caffe2_names(blobs: dict[str, Any]) -> dict[str, Any]:
    """Detectron (Caffe2) blobs renamed to the *suffixes* of detectron2 names, values fixed where
    Caffe2 laid them out differently (background class first in the box predictor)."""
    renamed = {}
    for original in sorted(blobs):
        if original.endswith("_momentum"):
            continue
        name = {"pred_b": "linear_b", "pred_w": "linear_w"}.get(original, original).replace("_", ".")
        for pattern, replacement in _C2_RULES:
            name = re.sub(pattern, replacement, name)
        name = _c2_fpn_name(name)
        value = np.asarray(blobs[original])
        if name.startswith("bbox_pred."):
            value = value[4:]  # Caffe2 also regressed a box for the background class
        elif name.startswith("cls_score."):
            value = np.concatenate((value[1:], value[:1]))  # background: first -> last
        renamed[name] = value
    return renamed


def match_suffixes(model_keys: list[str], checkpoint: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map each model key to the longest checkpoint key that is a '.'-delimited suffix of it."""
    matched, used = {}, set()
    for key in model_keys:
        best = max((c for c in checkpoint if key == c or key.endswith("." + c)), key=len, default=None)
        if best is not None:
            if best in used:
                raise DensePoseError(f"checkpoint key {best!r} matches several model keys; the file is ambiguous")
            used.add(best)
            matched[key] = checkpoint[best]
    return matched, sorted(set(checkpoint) - used)


def infer_architecture(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Reconstruct the architecture from checkpoint keys and shapes. What keys cannot tell (the
    box pooler of the Atop10P family, which has the same keys as DL_WC1M) takes the default of
    the 22 human models."""
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in state)

    try:
        stage4_blocks = {int(k.split(".")[3]) for k in state if k.startswith("backbone.bottom_up.res4.")}
        bottleneck = has("backbone.bottom_up.res2.0.conv3.")
        depth = {6: 50, 23: 101}.get(len(stage4_blocks), 50) if bottleneck else (34 if len(stage4_blocks) == 6 else 18)
        predictor = "roi_heads.densepose_predictor."
        decoder = has("roi_heads.decoder.")
        head_convs = len({k.split(".")[2] for k in state if k.startswith("roi_heads.densepose_head.body_conv_fcn")})
        uv_confidence = "indep_aniso" if has(predictor + "kappa_u_lowres") else ("iid_iso" if has(predictor + "sigma_2_lowres") else None)
        return ModelConfig(
            depth=depth,
            fpn_channels=int(state["backbone.fpn_lateral2.weight"].shape[0]),
            densepose_head="deeplab" if has("roi_heads.densepose_head.ASPP.") else "v1convx",
            decoder=decoder,
            pooler_resolution=28 if decoder else 14,
            head_channels=int(state["roi_heads.densepose_head.body_conv_fcn1.weight"].shape[0]),
            head_convs=head_convs,
            coarse_segm_channels=int(state[predictor + "ann_index_lowres.weight"].shape[1]),
            uv_confidence=uv_confidence,
            segm_confidence=has(predictor + "fine_segm_confidence_lowres"),
            box_fc_dim=int(state["roi_heads.box_head.fc1.weight"].shape[0]),
        )
    except KeyError as error:
        raise DensePoseError(f"checkpoint lacks {error.args[0]!r}: it is not a DensePose R-CNN (chart) checkpoint") from None


def load_weights(model: DensePoseRCNN, state: dict[str, torch.Tensor], kind: str = "detectron2", source: str = "checkpoint") -> None:
    """Load `state` into `model`, strictly. Caffe2 names are matched by suffix, and FrozenBN
    statistics Caffe2 did not store take detectron2's fill values (mean 0, variance 1)."""
    expected = model.state_dict()
    unused: list[str] = []
    if kind == "caffe2":
        state, unused = match_suffixes(list(expected), state)
        for key in expected:
            if key not in state and key.endswith(("norm.running_mean", "norm.running_var")):
                state[key] = torch.zeros_like(expected[key]) if key.endswith("mean") else torch.ones_like(expected[key])
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        arch = model.name
        details = []
        if wrong:
            details.append("shape mismatch " + ", ".join(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong[:3]))
        if missing:
            details.append(f"{len(missing)} missing, first {', '.join(missing[:3])}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected, first {', '.join(unexpected[:3])}")
        raise DensePoseError(f"{source} does not fit architecture {arch}: " + "; ".join(details))
    if unused:
        warnings.warn(f"{source}: ignored {len(unused)} Caffe2 blobs the model does not use, e.g. {unused[:3]}", stacklevel=2)
    model.load_state_dict(state, strict=True)


def save_checkpoint(model: DensePoseRCNN, path: str | os.PathLike, half: bool = False, **extra: Any) -> Path:
    """Write the weights and architecture so that `load_model(path)` rebuilds the model.
    `half` stores convolution and linear weights (the tensors of 2 or more dimensions: nearly
    all the bytes) as float16, half the file; biases and normalisation statistics stay float32,
    and loading turns everything back into float32. `extra` entries (e.g. training state) are
    stored beside them."""
    path = Path(path)
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() and v.dim() >= 2 else v for k, v in state.items()}
    payload = {"format": CHECKPOINT_FORMAT, "name": model.name, "config": model.config.to_dict(), "model": state, **extra}
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def zoo_checkpoint_path(model: ZooModel) -> Path:
    """Where the official weights of a zoo model are kept once downloaded (or placed by hand)."""
    return cache_dir() / model.full_name / model.file_name


def fetch_zoo_checkpoint(model: ZooModel) -> Path:
    """The official weights of a zoo model, downloaded and verified on first use."""
    return cached_download(model.url, f"{model.full_name}/{model.file_name}", model.md5_prefix)


def _zoo_entry_for_file(path: Path) -> ZooModel | None:
    """The zoo model a file name or its folders name: exactly (model_final_<md5>.pkl, the model
    id, a short or full name), or as the longest zoo short name inside the file's stem
    (`finetuned_R_50_FPN_DL_WC1M_3x_Atop10P_CA.pkl`)."""
    for part in (path.name, *path.parent.parts[::-1]):
        try:
            return get_zoo_model(part)
        except DensePoseError:
            continue
    inside = [model for model in ZOO if model.name in path.stem]
    return max(inside, key=lambda model: len(model.name)) if inside else None


def _architecture_from_keys(state: dict[str, torch.Tensor], path: Path) -> ModelConfig:
    """The architecture the keys describe; refused when they fit zoo architectures that compute
    differently (they cannot tell the Atop10P family's box pooler from DL_WC1M's)."""
    inferred = infer_architecture(state)
    candidates = [model for model in ZOO if _without_box_pooler(model.architecture) == inferred]
    poolers = {(model.architecture.box_pooler_aligned, model.architecture.box_pooler_sampling_ratio) for model in candidates}
    if len(poolers) > 1:
        names = ", ".join(model.name for model in candidates)
        raise DensePoseError(
            f"{path.name}: its keys fit several zoo architectures that find different people ({names}); say which with "
            "config=NAME (--config NAME on the command line), or with a zoo name in the file name"
        )
    return candidates[0].architecture if candidates else inferred


def _without_box_pooler(config: ModelConfig) -> ModelConfig:
    return dataclasses.replace(config, box_pooler_aligned=False, box_pooler_sampling_ratio=2)


def load_model(
    name_or_path: str | os.PathLike | None = None,
    config: ModelConfig | str | None = None,
    device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
) -> DensePoseRCNN:
    """A ready-to-run model (eval mode) from a zoo name, a local checkpoint, "default" or, with no
    argument, the embedded default model.

    For a local file the architecture comes from `config` (a ModelConfig or a zoo name), else from
    the file itself (our checkpoints record it), else from a zoo name in the file name, else from
    its keys, refusing keys that fit zoo architectures which compute differently.
    Loading never runs code from the file: pickles load through a reader that admits only
    arrays and plain data, torch files through torch's weights-only loader. A file that needs more
    (a detectron2 training checkpoint that pickled optimizer objects, say) is refused unless
    `trust_checkpoint=True`, which loads it with plain pickle: only for files you trust, since
    such a file can run any code."""
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL_NAME:
        if config is not None:
            raise DensePoseError("a config applies to checkpoint files and zoo names, not to the embedded default model")
        return load_default_model(device)
    path = Path(name_or_path)
    zoo_model: ZooModel | None = None
    looks_like_file = path.suffix in (".pkl", ".pth", ".pt") or os.sep in str(name_or_path)
    if not path.exists() and looks_like_file:
        raise DensePoseError(f"no such checkpoint file: {path}")
    if not path.exists():
        zoo_model = get_zoo_model(str(name_or_path))
        path = fetch_zoo_checkpoint(zoo_model)
    state, recorded, kind = read_state_dict(path, trust_checkpoint)
    if isinstance(config, str):
        architecture, name = get_zoo_model(config).architecture, get_zoo_model(config).name
    elif config is not None:
        architecture, name = config, path.stem
    elif zoo_model is not None:
        architecture, name = zoo_model.architecture, zoo_model.name
    elif recorded is not None:
        architecture, name = recorded, path.stem
    elif (match := _zoo_entry_for_file(path)) is not None:
        architecture, name = match.architecture, match.name
    elif kind == "caffe2":
        architecture, name = _caffe2_architecture(state), path.stem
    else:
        architecture, name = _architecture_from_keys(state, path), path.stem
    model = build_model(architecture, name)
    load_weights(model, state, kind, source=str(path))
    return model.to(device).eval()


def _caffe2_architecture(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Caffe2 DensePose R-CNN is detectron2's legacy architecture; only the depth varies."""
    stage4_blocks = {k.split(".")[1] for k in state if k.startswith("res4.")}
    return dataclasses.replace(architecture_from_name("R_50_FPN_s1x_legacy"), depth=101 if len(stage4_blocks) == 23 else 50)


def load_default_model(device: str | torch.device = "cpu") -> DensePoseRCNN:
    """The small model shipped inside the package (trained on our synthetic data; see
    configs/default_model.yaml): what `load_model()` and `densepose predict` use by default."""
    resource = importlib.resources.files("densepose_torch.assets") / DEFAULT_MODEL_FILE
    if not resource.is_file():
        raise DensePoseError(
            f"this installation lacks the embedded default model ({DEFAULT_MODEL_FILE}); pick a zoo model with "
            "--model NAME (e.g. --model R_50_FPN_s1x; `densepose models` lists all 27) or pass a checkpoint path"
        )
    with importlib.resources.as_file(resource) as path:
        state, config, kind = read_state_dict(path)  # our own file: the safe loaders read it
    if config is None:
        raise DensePoseError(f"the embedded {DEFAULT_MODEL_FILE} does not record its architecture; reinstall the package")
    # Its charts are our synthetic body's, whether or not the file predates the chart_body field.
    model = build_model(dataclasses.replace(config, chart_body="synthetic"), DEFAULT_MODEL_NAME)
    load_weights(model, state, kind, source=f"the embedded {DEFAULT_MODEL_FILE}")
    return model.to(device).eval()
