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
from ..modeling.densepose_heads import V1ConvXHead
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


def load_initial_weights(model: DensePoseRCNN, source: str | os.PathLike, grow_head: bool = False) -> tuple[int, int]:
    """Copy into `model` every tensor of `source` (a checkpoint file, or a zoo name) whose name
    and shape fit: a zoo model to fine-tune, or ImageNet backbone weights (Caffe2 names matched
    by suffix). With `grow_head`, a smaller DensePose head of the source is embedded in the
    model's (grow_densepose_head). Returns (tensors loaded, model tensors left as they were)."""
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
    loaded = set(fitting) | (grow_densepose_head(model, state) if grow_head else set())
    return len(loaded), len(expected) - len(loaded)


HEAD = "roi_heads.densepose_head."
PREDICTOR = "roi_heads.densepose_predictor."


def grow_densepose_head(model: DensePoseRCNN, state: dict[str, torch.Tensor]) -> set[str]:
    """Embed the source's trained DensePose head (`state`: fewer or narrower 3x3 convolutions)
    in `model`'s larger one, so that the model first computes exactly what the source did and
    training adds capacity to a trained head instead of starting one afresh. The source's
    convolutions fill the first channels of the first convolutions; the weights from new input
    channels to old output channels are zero, so nothing old reads a new channel; each further
    convolution passes the old channels through (an identity kernel, and the ReLU after it keeps
    the non-negative inputs as they are); the chart predictor reads the old channels only. New
    output channels keep their initial weights, so they take part from the first step.
    Returns the names of the model tensors set."""
    head = model.roi_heads.densepose_head
    if not isinstance(head, V1ConvXHead):
        raise DensePoseError("grow_head: only the plain convolutional DensePose head (densepose_head: v1convx) can grow")
    convs = sorted(int(k[len(HEAD) + len("body_conv_fcn"):].split(".")[0]) for k in state if k.startswith(HEAD + "body_conv_fcn") and k.endswith(".weight"))
    if not convs or convs != list(range(1, len(convs) + 1)) or any(k.startswith(HEAD) and "body_conv_fcn" not in k for k in state):
        raise DensePoseError("grow_head: the initial weights have no plain convolutional DensePose head to grow from")
    old = state[f"{HEAD}body_conv_fcn1.weight"].shape[0]
    new = head.body_conv_fcn1.out_channels
    if len(convs) > head.num_convs or old > new or state[f"{HEAD}body_conv_fcn1.weight"].shape[1] != head.body_conv_fcn1.in_channels:
        raise DensePoseError(f"grow_head: the initial weights' head ({len(convs)} convolutions of {old} channels) does not fit in "
                             f"this model's ({head.num_convs} of {new}, same input)")
    grown = set()
    with torch.no_grad():
        for i in range(1, head.num_convs + 1):
            conv = getattr(head, f"body_conv_fcn{i}")
            inputs = conv.in_channels if i == 1 else old
            conv.weight[:old] = 0
            if i <= len(convs):
                conv.weight[:old, :inputs] = state[f"{HEAD}body_conv_fcn{i}.weight"]
                conv.bias[:old] = state[f"{HEAD}body_conv_fcn{i}.bias"]
            else:
                conv.weight[:old, :old, 1, 1] = torch.eye(old)
                conv.bias[:old] = 0
            grown |= {f"{HEAD}body_conv_fcn{i}.weight", f"{HEAD}body_conv_fcn{i}.bias"}
        for name, module in model.roi_heads.densepose_predictor.named_children():
            key = f"{PREDICTOR}{name}"
            if f"{key}.weight" not in state or state[f"{key}.weight"].shape[1:] != module.weight.shape[1:]:
                raise DensePoseError(f"grow_head: the initial weights have no predictor {name} of this model's outputs")
            module.weight.zero_()
            module.weight[:old] = state[f"{key}.weight"]
            module.bias.copy_(state[f"{key}.bias"])
            grown |= {f"{key}.weight", f"{key}.bias"}
    return grown
