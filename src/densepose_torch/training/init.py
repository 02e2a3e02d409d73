"""Preparing a model for training: detectron2's initialisations, initial weights, the frozen
stages, and (for training from scratch) trainable batch norm that folds back into the FrozenBN
modules the inference architecture has.

A trainable `nn.BatchNorm2d` and `FrozenBatchNorm2d` share their state-dict names (weight,
bias, running_mean, running_var), so a model trained with batch norm exports to the zoo
architecture by copying four tensors per layer: in eval mode both compute the same function.
"""
from __future__ import annotations

import copy
import os

import torch
from torch import nn

from ..checkpoint import fetch_zoo_checkpoint, match_suffixes, read_state_dict
from ..errors import DensePoseError
from ..modeling import DensePoseRCNN
from ..modeling.layers import FrozenBatchNorm2d
from ..modeling.resnet import STAGE_NAMES
from ..zoo import get_zoo_model


def _msra_fill(module: nn.Module) -> None:
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _xavier_fill(module: nn.Module) -> None:
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _normal_fill(module: nn.Module, std: float) -> None:
    nn.init.normal_(module.weight, std=std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def initialize_weights(model: DensePoseRCNN) -> None:
    """detectron2's initial weights for training (build_model leaves PyTorch's defaults):
    MSRA fill for ResNet, decoder, DensePose head and predictor convolutions, Xavier fill for
    FPN convolutions and box-head FC layers, small normals for the RPN and box predictor."""
    initialize_backbone(model.backbone)
    for module in model.proposal_generator.rpn_head.modules():
        if isinstance(module, nn.Conv2d):
            _normal_fill(module, 0.01)
    heads = model.roi_heads
    _xavier_fill(heads.box_head.fc1)
    _xavier_fill(heads.box_head.fc2)
    _normal_fill(heads.box_predictor.cls_score, 0.01)
    _normal_fill(heads.box_predictor.bbox_pred, 0.001)
    densepose_parts = [heads.densepose_head, heads.densepose_predictor] + ([heads.decoder] if hasattr(heads, "decoder") else [])
    if model.config.is_cascade:
        densepose_parts += [heads.tasks, heads.cascade]
    initialize_convolutions(densepose_parts)


def initialize_backbone(backbone: nn.Module) -> None:
    """MSRA fill for the ResNet's convolutions, Xavier fill for the FPN's (detectron2's choice)."""
    for module in backbone.bottom_up.modules():
        if isinstance(module, nn.Conv2d):
            _msra_fill(module)
    for name, module in backbone.named_children():
        if name.startswith("fpn_"):
            _xavier_fill(module)


def initialize_convolutions(parts: list[nn.Module]) -> None:
    """MSRA fill for every (transposed) convolution of the DensePose-style heads; GroupNorm to identity."""
    for part in parts:
        for module in part.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                _msra_fill(module)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def _backbone_stages(model: DensePoseRCNN) -> list[nn.Module]:
    bottom_up = model.backbone.bottom_up
    return [bottom_up.stem] + [getattr(bottom_up, name) for name in STAGE_NAMES]


def _replace_norms(root: nn.Module, convert) -> int:
    count = 0
    for name, child in list(root.named_children()):
        replacement = convert(child)
        if replacement is not None:
            setattr(root, name, replacement)
            count += 1
        else:
            count += _replace_norms(child, convert)
    return count


def _to_batch_norm(module: nn.Module) -> nn.Module | None:
    if not isinstance(module, FrozenBatchNorm2d):
        return None
    norm = nn.BatchNorm2d(module.num_features, eps=module.eps).to(module.weight.device)
    with torch.no_grad():
        norm.weight.copy_(module.weight)
        norm.bias.copy_(module.bias)
        norm.running_mean.copy_(module.running_mean)
        norm.running_var.copy_(module.running_var)
    return norm


def _to_frozen(module: nn.Module) -> nn.Module | None:
    if not isinstance(module, nn.BatchNorm2d):
        return None
    frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps).to(module.weight.device)
    frozen.weight.copy_(module.weight.detach())
    frozen.bias.copy_(module.bias.detach())
    frozen.running_mean.copy_(module.running_mean)
    frozen.running_var.copy_(module.running_var)
    return frozen


def prepare_backbone(model: DensePoseRCNN, norm: str, freeze_at: int) -> None:
    """Freeze the first `freeze_at` backbone stages (stem, res2, ...: weights fixed, FrozenBN);
    with norm "bn", the other stages' FrozenBN layers become trainable batch norm."""
    for index, stage in enumerate(_backbone_stages(model)):
        if index < freeze_at:
            for parameter in stage.parameters():
                parameter.requires_grad_(False)
        elif norm == "bn":
            _replace_norms(stage, _to_batch_norm)


def export_model(model: DensePoseRCNN) -> DensePoseRCNN:
    """A copy of `model` in the inference architecture (batch norm folded back into FrozenBN),
    in eval mode, for saving and evaluation."""
    exported = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    _replace_norms(exported, _to_frozen)
    for parameter in exported.parameters():
        parameter.requires_grad_(True)
    return exported.eval()


def load_initial_weights(model: DensePoseRCNN, source: str | os.PathLike) -> tuple[int, int]:
    """Copy into `model` every tensor of `source` (a checkpoint file, or a zoo name) whose name
    and shape fit: a zoo model to fine-tune, or ImageNet backbone weights (Caffe2 names matched
    by suffix). Returns (tensors loaded, model tensors left as they were)."""
    path = str(source)
    if not os.path.exists(path):
        try:
            path = str(fetch_zoo_checkpoint(get_zoo_model(path)))
        except DensePoseError:
            raise DensePoseError(f"init_weights: {source} is neither a file nor a zoo model name") from None
    state, _, kind = read_state_dict(path)
    expected = model.state_dict()
    if kind == "caffe2":
        state, _ = match_suffixes(list(expected), state)
    fitting = {k: v for k, v in state.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)}
    if not fitting:
        raise DensePoseError(f"init_weights: no tensor of {path} fits the model (names or shapes differ everywhere)")
    model.load_state_dict(fitting, strict=False)
    return len(fitting), len(expected) - len(fitting)
