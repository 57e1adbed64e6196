"""Small helpers shared by the baselines: where a module sits, and what enters it."""

from __future__ import annotations

import torch
from torch import nn

from elder import trunk
from elder.editor import Encoded
from elder.models import LoadedModel


class _Stop(Exception):
    pass


def block_of(model: LoadedModel, module: str) -> int:
    """Index of the transformer block that holds ``module`` (e.g. 'model.layers.25.mlp...')."""
    prefix = model.blocks + "."
    head = module[len(prefix) :].partition(".")[0]
    if not module.startswith(prefix) or not head.isdigit():
        raise ValueError(f"module '{module}' is not inside a block of '{model.blocks}'")
    block = int(head)
    if block >= len(model.block_list):
        raise ValueError(f"module '{module}': {model.name} has only {len(model.block_list)} blocks")
    return block


def rows(h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The vector of each sequence at one position: h (B, T, d), positions (B,) -> (B, d)."""
    return h[torch.arange(h.shape[0], device=h.device), positions.to(h.device)]


def module_io(
    model: LoadedModel,
    module: nn.Module,
    enc: Encoded,
    start: int | None = None,
    hidden: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output (B, T, ·) of ``module`` on a batch, without running what comes after.

    With ``start``/``hidden`` (the cached input of block ``start``) only blocks ``start..``
    run, as on the fast path.
    """
    captured: dict[str, torch.Tensor] = {}

    def grab(mod, args, output):
        captured["in"], captured["out"] = args[0], output
        raise _Stop

    handle = module.register_forward_hook(grab)
    try:
        with torch.no_grad():
            if hidden is None:
                model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
            else:
                with trunk.from_block(model, start):
                    model.hf.base_model(inputs_embeds=hidden, attention_mask=enc.attention_mask)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["in"], captured["out"]


def target_logits(
    model: LoadedModel, enc: Encoded, start: int | None, hidden: torch.Tensor | None
) -> torch.Tensor:
    """Logits at the target-predicting positions, on the fast path when ``hidden`` is given."""
    if hidden is None:
        return trunk.target_logits(model, enc)
    return trunk.target_logits_from(model, start, hidden, enc)
