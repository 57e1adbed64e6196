"""The fast path for training at upper layers: cache the frozen prefix, keep only target logits.

When every trainable parameter sits at or above block ``start``, the blocks below it are
frozen and see the same input in every iteration of a batch, so their output — the hidden
states entering block ``start`` — is computed once. Each iteration then runs blocks
``start..`` only, on the real tokens alone (the batch packed into one row, no padding), and
the LM head only at the positions that predict a target token.

When what is trained enters at one position per row (ROME's δ), the tokens before it are frozen
at every block too: ``freeze_past`` keeps their keys and values, and each iteration runs only
the tokens from that position on (``live_hidden_from``).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from elder.editor import Encoded
from elder.models import LoadedModel, get_module, set_module


class _Stop(Exception):
    pass


class _NoPosition(nn.Module):
    """Stands in for an absolute position embedding: the cached states already contain it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*position_ids.shape, self.dim, device=position_ids.device)


def block_input(model: LoadedModel, block: int, enc: Encoded) -> torch.Tensor:
    """Hidden states entering ``block`` (B, T, d); the blocks above it are not run."""
    return module_input(model, model.block_list[block], enc)


def module_input(model: LoadedModel, module: nn.Module, enc: Encoded) -> torch.Tensor:
    """The first input of ``module`` (B, T, ·) on the batch; nothing after it is run."""
    captured: dict[str, torch.Tensor] = {}

    def grab(module, args, kwargs):
        captured["h"] = args[0] if args else kwargs["hidden_states"]
        raise _Stop

    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["h"]


@contextmanager
def from_block(model: LoadedModel, start: int):
    """Make the model's trunk start at block ``start`` and take block inputs as embeddings."""
    blocks = model.block_list
    set_module(model.hf, model.blocks, nn.ModuleList(list(blocks)[start:]))
    pos = get_module(model.hf, model.position_embedding) if model.position_embedding else None
    if pos is not None:
        set_module(model.hf, model.position_embedding, _NoPosition(pos.embedding_dim))
    try:
        yield
    finally:
        set_module(model.hf, model.blocks, blocks)
        if pos is not None:
            set_module(model.hf, model.position_embedding, pos)


@dataclass
class Packed:
    """The real tokens of a right-padded batch laid end to end in one row: no padding work."""

    hidden: torch.Tensor  # (1, n, d) hidden states entering the start block
    position_ids: torch.Tensor  # (1, n) position of each token within its own sequence
    mask: torch.Tensor  # (1, 1, n, n) block-diagonal causal: a token sees its sequence's past
    sequence: torch.Tensor  # (n,) the batch row each token comes from
    target_index: torch.Tensor  # (n_targets,) the tokens whose next token is a target token


def pack(hidden: torch.Tensor, enc: Encoded) -> Packed:
    """Pack the block inputs (B, T, d) of a right-padded batch into one row."""
    keep = enc.attention_mask.bool()  # (B, T)
    sequence = torch.arange(keep.shape[0], device=keep.device).repeat_interleave(keep.sum(1))
    position = (keep.cumsum(1) - 1)[keep]  # (n,)
    same = sequence[:, None] == sequence[None, :]
    causal = position[:, None] >= position[None, :]
    return Packed(
        hidden[keep][None],
        position[None],
        (same & causal)[None, None],
        sequence,
        enc.target_mask[keep].nonzero()[:, 0],  # found once: indexing by it needs no sync
    )


def target_logits_from(
    model: LoadedModel, start: int, hidden: torch.Tensor, enc: Encoded
) -> torch.Tensor:
    """Logits at the target-predicting positions (n_targets, V), running blocks ``start..``.

    The batch keeps its (B, T) layout, for methods whose modules hold per-row state.
    """
    with from_block(model, start):
        out = model.hf.base_model(
            inputs_embeds=hidden, attention_mask=enc.attention_mask, use_cache=False
        )
    h = out.last_hidden_state[enc.target_mask]  # (n_targets, d)
    return model.hf.get_output_embeddings()(h)


def packed_target_logits_from(model: LoadedModel, start: int, packed: Packed) -> torch.Tensor:
    """As :func:`target_logits_from`, on a batch packed into one row (no padding work)."""
    with from_block(model, start):
        out = model.hf.base_model(
            inputs_embeds=packed.hidden,
            attention_mask=packed.mask,
            position_ids=packed.position_ids,
            use_cache=False,  # a training forward: no KV cache to build
        )
    h = out.last_hidden_state[0, packed.target_index]  # (n_targets, d)
    return model.hf.get_output_embeddings()(h)


@torch.no_grad()
def packed_module_inputs(
    model: LoadedModel, start: int, packed: Packed, modules: list[nn.Module]
) -> list[torch.Tensor]:
    """The first input (n, ·) of each of ``modules`` on the packed batch, in their order; the
    blocks from ``start`` run only up to the last of them."""
    inputs: list[torch.Tensor] = []

    def grab(module, args):
        inputs.append(args[0][0])
        if len(inputs) == len(modules):
            raise _Stop

    handles = [m.register_forward_pre_hook(grab) for m in modules]
    try:
        packed_target_logits_from(model, start, packed)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def target_logits(model: LoadedModel, enc: Encoded) -> torch.Tensor:
    """The plain path: full forward, then the logits at the target-predicting positions."""
    out = model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask, use_cache=False)
    return out.logits[enc.target_mask]


def _cache_kwarg(base_model: nn.Module) -> str:
    """The name of a trunk's KV-cache argument: ``cache`` since transformers 5.x renamed it."""
    params = inspect.signature(base_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class FrozenPast:
    """A packed batch whose tokens before ``live_from[row]`` never change between iterations.

    When the trained quantity enters at one position per row (ROME's δ at the last subject
    token), a causal model's earlier tokens do not depend on it at any block: their keys and
    values at blocks ``start..`` are computed once (``past``), and each iteration runs only the
    later, "live" tokens, which attend to them.
    """

    past: list[tuple[torch.Tensor, torch.Tensor]]  # blocks start..: keys, values (1, h, n_past, dₕ)
    hidden: torch.Tensor  # (1, n_live, d) hidden states entering the start block
    position_ids: torch.Tensor  # (1, n_live)
    mask: torch.Tensor  # (1, 1, n_live, n_past + n_live): own row's past, causal among live
    sequence: torch.Tensor  # (n_live,) the batch row of each live token
    first: torch.Tensor  # (rows,) index of each row's first live token (its position live_from)
    next_label: torch.Tensor  # (n_live,) the label of the next token (-100: none)


def freeze_past(
    model: LoadedModel, start: int, hidden: torch.Tensor, enc: Encoded, live_from: torch.Tensor
) -> FrozenPast:
    """Split the right-padded batch (block inputs ``hidden`` (B, T, d)) at ``live_from`` (B,)
    and run blocks ``start..`` once on the tokens before it, keeping their keys and values.
    Every row keeps at least one live token: ``live_from`` < its length."""
    packed = pack(hidden, enc)
    sequence, position = packed.sequence, packed.position_ids[0]
    live = position >= live_from[sequence]  # (n,)
    next_label = torch.full_like(enc.labels, -100)
    next_label[:, :-1] = enc.labels[:, 1:]
    past_ids = sequence[~live]
    past: list[tuple[torch.Tensor, torch.Tensor]] = []
    if len(past_ids):
        cache = DynamicCache()
        with torch.no_grad(), from_block(model, start):
            model.hf.base_model(
                inputs_embeds=packed.hidden[:, ~live],
                attention_mask=packed.mask[:, :, ~live][..., ~live],
                position_ids=position[~live][None],
                use_cache=True,
                **{_cache_kwarg(model.hf.base_model): cache},
            )
        past = [(layer.keys, layer.values) for layer in cache.layers[start:]]
    key_sequence = torch.cat([past_ids, sequence[live]])
    key_position = torch.cat([position[~live], position[live]])
    mask = (sequence[live, None] == key_sequence[None]) & (
        position[live, None] >= key_position[None]
    )
    counts = torch.bincount(sequence[live], minlength=enc.labels.shape[0])  # (B,)
    return FrozenPast(
        past,
        packed.hidden[:, live],
        position[live][None],
        mask[None, None],
        sequence[live],
        counts.cumsum(0) - counts,
        next_label[enc.attention_mask.bool()][live],
    )


def live_hidden_from(model: LoadedModel, start: int, frozen: FrozenPast) -> torch.Tensor:
    """Final hidden states (n_live, d) of the live tokens, running blocks ``start..`` on them."""
    cache = DynamicCache()
    for offset, (keys, values) in enumerate(frozen.past):  # a fresh copy: the pass appends
        cache.update(keys, values, start + offset)
    n_past = frozen.mask.shape[-1] - frozen.hidden.shape[1]
    with from_block(model, start):
        out = model.hf.base_model(
            inputs_embeds=frozen.hidden,
            attention_mask=frozen.mask,
            position_ids=frozen.position_ids,
            use_cache=bool(frozen.past),
            **{_cache_kwarg(model.hf.base_model): cache if frozen.past else None},
            cache_position=torch.arange(n_past, frozen.mask.shape[-1], device=frozen.mask.device),
        )
    return out.last_hidden_state[0]
