"""What the locate-then-edit methods share (ROME, AlphaEdit): contexts, subject rows, v* fitting.

Each edit is written at the last subject token. Its rows are the prompt after each context
(nothing, then short texts the unedited model samples once per stream), plus ROME's KL row
"S is a". The value to write is found by gradient descent on a vector δ added at that token
to the output of one layer (ROME's Eq. 4, MEMIT's Eq. 16):

    δ = argmin NLL(target | rows, δ added) + kl_factor · KL(p(· | "S is a") ‖ p₀)
             + v_weight_decay · ‖δ‖ / ‖m‖²,        ‖δ‖ ≤ clamp_norm_factor · ‖m‖

where m is the vector δ is added to: the layer's output (ROME) or the residual stream after
the block (MEMIT, AlphaEdit), at the bare prompt's last subject token.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from elder import trunk
from elder.editor import EditRecord, Encoded, check_subjects
from elder.encoding import encode, subject_last_token
from elder.models import LoadedModel

KL_PROMPT = "{} is a"  # ROME's "essence" prompt for the KL term


class FitOptions(Protocol):
    """The v*-fitting hyperparameters, under the references' names."""

    v_lr: float
    v_num_grad_steps: int
    v_weight_decay: float
    kl_factor: float
    clamp_norm_factor: float
    stop_loss: float
    fast_path: bool


def subject_rows(
    model: LoadedModel, record: EditRecord, contexts: list[str]
) -> tuple[Encoded, torch.Tensor]:
    """Rewriting rows (each context + prompt, then the target) and a last KL row.

    Returns the batch and the index of the last subject token in each row (rows,).
    """
    check_subjects("locate-then-edit", [record])
    at = record.prompt.find(record.subject)
    tok = model.tokenizer
    texts, lookups = [], []
    for context in contexts:
        texts.append(context + record.prompt)
        lookups.append(subject_last_token(tok, texts[-1], len(context) + at + len(record.subject)))
    texts.append(KL_PROMPT.format(record.subject))
    lookups.append(subject_last_token(tok, texts[-1], len(record.subject)))
    enc = encode(tok, texts, [record.target] * len(texts), model.device)
    return enc, torch.tensor(lookups, device=model.device)


def fit_delta(
    model: LoadedModel,
    layer: nn.Module,
    start: int,
    enc: Encoded,
    lookups: torch.Tensor,
    opts: FitOptions,
    m: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Fit δ (out,) added to ``layer``'s output (inside block ``start``) at each row's lookup.

    ``m`` is the vector whose norm bounds δ; None: the layer's own output on row 0. Returns
    (m, δ, statistics).
    """
    n = len(lookups)
    hidden = trunk.block_input(model, start, enc)  # (rows, T, d), frozen below
    head = model.hf.get_output_embeddings()
    if opts.fast_path:  # tokens before each row's δ are frozen at every block: run them once
        frozen = trunk.freeze_past(model, start, hidden, enc, lookups)
        at = (torch.zeros_like(lookups), frozen.first)  # δ's places in (1, n_live, out)
        nll_at = (frozen.next_label != -100) & (frozen.sequence != n - 1)  # not the KL row
        targets = frozen.next_label[nll_at]

        def final_hidden() -> tuple[torch.Tensor, torch.Tensor]:
            h = trunk.live_hidden_from(model, start, frozen)  # (n_live, d)
            return h[nll_at], h[frozen.first[-1]]

    else:
        at = (torch.arange(n, device=lookups.device), lookups)  # in (rows, T, out)
        shifted = enc.labels[:, 1:]  # (rows, T-1): the token each position predicts
        nll_mask = shifted != -100
        nll_mask[-1] = False  # the KL row only serves the KL term
        targets = shifted[nll_mask]

        def final_hidden() -> tuple[torch.Tensor, torch.Tensor]:
            with trunk.from_block(model, start):
                out = model.hf.base_model(inputs_embeds=hidden, attention_mask=enc.attention_mask)
            h = out.last_hidden_state  # (rows, T, d)
            return h[:, :-1][nll_mask], h[-1, lookups[-1]]

    delta: torch.Tensor | None = None
    state: dict[str, torch.Tensor] = {}

    def add_delta(mod, args, out):  # δ at the last subject token of every row
        nonlocal delta
        if delta is None:
            state["m"] = out[at[0][0], at[1][0]].detach().float() if m is None else m.float()
            delta = torch.zeros_like(state["m"], requires_grad=True)
            state["optimizer"] = torch.optim.Adam([delta], lr=opts.v_lr)
        return out.index_put(at, delta.to(out.dtype).expand(n, -1), accumulate=True)

    handle = layer.register_forward_hook(add_delta)
    try:
        for step in range(opts.v_num_grad_steps):
            h_targets, h_kl = final_hidden()
            nll = F.cross_entropy(head(h_targets).float(), targets)
            kl_log_probs = torch.log_softmax(head(h_kl).float(), -1)
            if step == 0:
                kl_init = kl_log_probs.detach()
            # KL(p ‖ p_0) on "S is a" at the last subject token: keep the subject's essence.
            kl = F.kl_div(kl_init, kl_log_probs, log_target=True, reduction="sum")
            norm_m = state["m"].norm()
            decay = opts.v_weight_decay * delta.norm() / norm_m**2
            loss = nll + opts.kl_factor * kl + decay
            if loss.item() < opts.stop_loss or step == opts.v_num_grad_steps - 1:
                break
            state["optimizer"].zero_grad(set_to_none=True)
            loss.backward()
            state["optimizer"].step()
            with torch.no_grad():  # project δ onto the ball ‖δ‖ ≤ clamp_norm_factor · ‖m‖
                max_norm = opts.clamp_norm_factor * norm_m
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    finally:
        handle.remove()
    info = {"nll": nll.item(), "kl": kl.item(), "delta_ratio": (delta.norm() / norm_m).item()}
    return state["m"], delta.detach(), info
