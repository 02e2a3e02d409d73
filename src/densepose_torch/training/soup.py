"""A model soup: the element-wise mean of the weights of several runs of one model.

Fine-tunes that start from the same weights stay close enough in weight space that their mean is
itself a good model, and often a better one than each (Wortsman et al., "Model soups", ICML 2022):
what one run learnt by chance from its data (a false detection on some texture) is averaged away,
what they all learnt stays. It costs nothing at inference. Runs from different starts do not
average into anything useful; nothing here can check that, the held-out figures will show it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..checkpoint import load_model
from ..errors import DensePoseError
from ..modeling import DensePoseRCNN


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> DensePoseRCNN:
    """The model of `paths[0]` with every floating-point tensor (weights, biases, frozen
    normalisation statistics) replaced by its mean over all the checkpoints; integer tensors are
    the first one's. The checkpoints must hold one architecture."""
    if len(paths) < 2:
        raise DensePoseError("average_of: name at least two runs to average")
    models = [load_model(path) for path in paths]
    first = models[0]
    for path, model in zip(paths[1:], models[1:]):
        if model.config != first.config:
            raise DensePoseError(f"average_of: {path} holds another architecture than {paths[0]}; only runs of one model can be averaged")
    states = [model.state_dict() for model in models]
    with torch.no_grad():
        for name, tensor in first.state_dict().items():  # the model's own tensors: set in place
            if tensor.is_floating_point():
                tensor.copy_(torch.stack([state[name] for state in states]).mean(0))
    return first
