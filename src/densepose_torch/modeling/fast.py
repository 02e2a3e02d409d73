"""The fast inference copy of a DensePose R-CNN: FrozenBN folded into the convolutions, the
network in bfloat16 (or float16) with channels-last activations, and the layers that produce
scores, box deltas and chart logits kept in float32.

Each step was kept because it measured faster on the whole predictor (benchmarks/bench_inference.py):
- Folding removes one full pass over every ResNet activation per convolution; it changes the
  float32 rounding, which is why the exact path never folds.
- bfloat16 doubles the convolution throughput of CPUs with AVX512-BF16 or AMX (oneDNN) and of
  GPUs' tensor cores, and halves the bytes every elementwise pass moves.
- Channels-last is the layout oneDNN's and cuDNN's fast convolution kernels use natively, and it
  makes RoIAlign's gather table (one row of channels per pixel) a view instead of a copy.
- The final 1x1/linear/deconvolution layers are cheap (a few output channels) but decide which
  proposals are kept, which box survives NMS and which part a pixel gets: in float32 they read
  the half-precision features without adding rounding of their own.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .densepose_rcnn import DensePoseRCNN
from .layers import Conv2d, FrozenBatchNorm2d


class Float32Layer(nn.Module):
    """Runs `layer` (kept in float32) on its input cast to float32."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float())


def fold_frozen_batchnorm(model: nn.Module) -> None:
    """In place: every convolution followed by a FrozenBatchNorm2d computes both at once
    (weight scaled per output channel, the shift as bias)."""
    for module in model.modules():
        if isinstance(module, Conv2d) and isinstance(module.norm, FrozenBatchNorm2d):
            norm = module.norm
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shift = norm.bias - norm.running_mean * scale
            if module.bias is not None:
                shift = shift + module.bias.detach() * scale
            module.weight = nn.Parameter(module.weight.detach() * scale[:, None, None, None], requires_grad=False)
            module.bias = nn.Parameter(shift, requires_grad=False)
            module.norm = None


def _keep_in_float32(model: DensePoseRCNN) -> None:
    rpn_head = model.proposal_generator.rpn_head
    rpn_head.objectness_logits = Float32Layer(rpn_head.objectness_logits)
    rpn_head.anchor_deltas = Float32Layer(rpn_head.anchor_deltas)
    heads = model.roi_heads
    heads.box_predictor = Float32Layer(heads.box_predictor)
    heads.densepose_predictor = Float32Layer(heads.densepose_predictor)
    if model.config.is_cascade:
        heads.cascade.densepose_predictor = Float32Layer(heads.cascade.densepose_predictor)


def fast_dtype(device: torch.device) -> torch.dtype:
    """The half precision this device computes fastest in: bfloat16 on CPUs with AVX512-BF16 or
    AMX and on GPUs that support it, float16 on older GPUs; float32 on other CPUs (where oneDNN
    would emulate bfloat16, slower than float32)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bfloat16():
        return torch.bfloat16
    return torch.float32


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 kernels on this CPU: on x86 it needs AVX-512 BW, VL and DQ
    (AVX512-BF16 and AMX make them fast), on ARM the BF16 extension. Asked through torch's
    public CPU capability table."""
    if not torch.backends.mkldnn.is_available():
        return False
    capabilities = torch.cpu.get_capabilities()
    if capabilities.get("architecture") in ("x86_64", "x86"):
        return all(capabilities.get(name, False) for name in ("avx512_bw", "avx512_vl", "avx512_dq"))
    return bool(capabilities.get("bf16", False))


def fast_copy(model: DensePoseRCNN, device: torch.device, dtype: torch.dtype | None = None) -> DensePoseRCNN:
    """A copy of `model` on `device` for fast inference (see the module docstring); `model` itself
    is left as it was. `dtype` defaults to `fast_dtype(device)`."""
    dtype = dtype or fast_dtype(device)
    fast = copy.deepcopy(model).to(device).eval()
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    fold_frozen_batchnorm(fast)
    mean = fast.pixel_mean  # the input is normalised in float32 before it is cast
    fast.to(dtype=dtype, memory_format=torch.channels_last)
    fast.pixel_mean = mean
    _keep_in_float32(fast)
    fast.compute_dtype = dtype
    fast.channels_last = True
    return fast
