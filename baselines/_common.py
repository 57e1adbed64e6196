"""Small helpers shared by the baselines: where a module sits, what enters it, what it logs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.activations import ACT2FN

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


def ffn_activation(
    model: LoadedModel, name: str | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation ``name``, or by default the FFN's own (``hidden_act``; GPT-2's name)."""
    config = model.hf.config
    name = name or getattr(config, "hidden_act", None) or config.activation_function
    return ACT2FN[name]


def mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """Each statistic averaged over the edits that report it (per-edit dicts -> one dict)."""
    keys = dict.fromkeys(k for s in stats for k in s)
    return {k: sum(s[k] for s in stats if k in s) / sum(k in s for s in stats) for k in keys}
