"""Defer: GRACE's online, SERAC-like baseline (Hartvigsen et al., NeurIPS 2023).

The ELDER paper's "SERAC" row on lifelong streams is this adaptation of SERAC (its arXiv
version says so). At one layer (GRACE's), two heads read the layer input q at the last prompt
token: a scope gate g(q) = σ(w_d·q + b_d) and a value head v(q) = W_v q + b_v. The layer's
output at every position becomes

    training:   g · v + (1 − g) · layer(x)
    inference:  v where g ≥ threshold, else layer(x)

Before the first edit the layer is untouched. Each edit trains both heads, which persist over
the stream, by a fresh Adam on the target's NLL alone (no scope loss, no negatives: the
reference's). Defaults from Thartvigsen/GRACE@f674183, grace/editors/defer.py and
config/editor/defer.yaml. Named differences: the query is the last prompt token (the
reference: the last token of its batch-of-one input), the stream's batches are edited one
record after another, as the reference's batches of one are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines._common import block_of, mean_stats, rows, target_logits
from elder import trunk
from elder.editor import Editor, EditRecord
from elder.encoding import encode
from elder.models import LoadedModel, get_module, set_module
from elder.molora import io_features


@dataclass
class DeferConfig:
    """Hyperparameters of Defer; defaults are the reference's."""

    module: str  # the layer whose output the heads replace (GRACE's)
    lr: float = 1e-1  # a fresh Adam per edit
    iterations: int = 100
    threshold: float = 0.5  # g ≥ threshold: the value head answers
    fast_path: bool = True  # cache the frozen blocks below the layer while training
    seed: int = 0  # the heads' initialization (PyTorch's default nn.Linear one)

    def __post_init__(self) -> None:
        if self.iterations < 1 or not 0 < self.threshold < 1:
            raise ValueError("Defer: need iterations >= 1 and 0 < threshold < 1")


class DeferLayer(nn.Module):
    """A frozen layer plus the scope gate and the value head, read at the last prompt token."""

    def __init__(self, base_layer: nn.Module, seed: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        in_f, out_f = io_features(base_layer)
        ref = base_layer.weight
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.gate = nn.Linear(in_f, 1).to(ref)
            self.value = nn.Linear(in_f, out_f).to(ref)
        self.trained = False  # untouched until the first edit
        self.training_mix = False  # the soft mixture (training) or the hard switch
        self.threshold = 0.5
        self.prompt_last: torch.Tensor | None = None  # (B,) set around a forward
        self.lookup: dict[str, torch.Tensor] | None = None  # kept over decode steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if not self.trained or self.prompt_last is None:
            return out
        if self.lookup is not None and "gate" in self.lookup:  # a decode step of `generate`
            g, v = self.lookup["gate"], self.lookup["value"]
        else:
            q = rows(x, self.prompt_last)  # (B, in)
            g, v = torch.sigmoid(self.gate(q)), self.value(q)  # (B, 1), (B, out)
            if self.lookup is not None:
                self.lookup.update(gate=g, value=v)
        g, v = g[:, None, :], v[:, None, :]  # broadcast over every position
        if self.training_mix:
            return g * v + (1 - g) * out
        return torch.where(g >= self.threshold, v.to(out.dtype), out)


class Defer(Editor):
    """A scope gate and a value head at one layer, trained online edit after edit."""

    name = "defer"
    config_class = DeferConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.block = block_of(model, cfg.module)
        self.layer = DeferLayer(get_module(model.hf, cfg.module), cfg.seed)
        self.layer.threshold = cfg.threshold
        set_module(model.hf, cfg.module, self.layer)

    def heads(self) -> list[nn.Parameter]:
        return [*self.layer.gate.parameters(), *self.layer.value.parameters()]

    def extra_params(self) -> int:
        return sum(p.numel() for p in self.heads())

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        return mean_stats([self.edit_one(record) for record in batch])

    def edit_one(self, record: EditRecord) -> dict[str, float]:
        cfg, layer = self.config, self.layer
        enc = encode(self.model.tokenizer, [record.prompt], [record.target], self.model.device)
        hidden = trunk.block_input(self.model, self.block, enc) if cfg.fast_path else None
        start = self.block if cfg.fast_path else None
        params = self.heads()
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        layer.trained, layer.training_mix, layer.prompt_last = True, True, enc.prompt_last
        for p in params:
            p.requires_grad_(True)
        try:
            for _ in range(cfg.iterations):
                logits = target_logits(self.model, enc, start, hidden)
                loss = F.cross_entropy(logits.float(), enc.target_ids)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                x = trunk.module_input(self.model, layer, enc)
                gate = torch.sigmoid(layer.gate(rows(x, enc.prompt_last))).item()
        finally:
            layer.training_mix, layer.prompt_last = False, None
            for p in params:
                p.requires_grad_(False)
                p.grad = None
        return {"loss": loss.item(), "gate": gate}

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Gate each row at ``prompt_last``; ``in_scope``: the value head answered it."""
        lookup: dict[str, torch.Tensor] = {}
        info: dict[str, torch.Tensor] = {}
        self.layer.prompt_last, self.layer.lookup = prompt_last, lookup
        try:
            yield info
        finally:
            self.layer.prompt_last = self.layer.lookup = None
        gate = lookup.get("gate")
        in_scope = (gate[:, 0] >= self.config.threshold).float() if gate is not None else None
        info["in_scope"] = torch.zeros(len(input_ids)) if in_scope is None else in_scope.cpu()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            f"{head}.{k}": t.detach().cpu().contiguous()
            for head in ("gate", "value")
            for k, t in getattr(self.layer, head).state_dict().items()
        }
        return tensors, {
            "method": self.name,
            "module": self.config.module,
            "trained": self.layer.trained,
        }

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("module") != self.config.module:
            raise ValueError(
                f"Defer state is for '{meta.get('module')}', not '{self.config.module}'"
            )
        for head in ("gate", "value"):
            module = getattr(self.layer, head)
            module.load_state_dict(
                {k: tensors[f"{head}.{k}"].to(module.weight) for k in module.state_dict()}
            )
        self.layer.trained = bool(meta["trained"])
