"""Helpers for the methods that edit the weight of one FC layer in place (FT-L, ROME)."""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from elder.models import LoadedModel, get_module


def fc_layer(model: LoadedModel, module: str) -> nn.Module:
    """The nn.Linear or GPT-2 Conv1D at ``module``; a ValueError for anything else."""
    layer = get_module(model.hf, module)
    if not isinstance(layer, nn.Linear | Conv1D):
        raise ValueError(f"'{module}' is a {type(layer).__name__}, not an nn.Linear or Conv1D")
    return layer


def weight_out_in(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as W (out, in), y = W x + b: a view, so writes reach the layer."""
    return layer.weight.T if isinstance(layer, Conv1D) else layer.weight  # Conv1D is (in, out)
