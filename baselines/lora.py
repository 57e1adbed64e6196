"""LoRA: one plain LoRA (Hu et al. 2021, through HF PEFT) trained on each edit batch in turn.

The "LoRA" row of the ELDER paper's Table 1: the same FC layers as ELDER, one adapter per
layer, no routing and no protection of earlier edits (so later batches overwrite earlier
ones). Adapters are injected in place with ``peft.inject_adapter_in_model``, which keeps the
model's top-level structure, so module paths (``LoadedModel.blocks``) still resolve.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from baselines._common import target_logits
from baselines.one_layer import block_of, fc_layer
from elder import trunk
from elder.editor import Editor, EditRecord
from elder.models import LoadedModel


class LoRA(Editor):
    """Plain LoRA on ``modules``; Adam over the adapters, ``iterations`` steps per batch."""

    name = "lora"

    def __init__(
        self,
        model: LoadedModel,
        modules: list[str],
        r: int = 8,
        alpha: float = 8.0,
        dropout: float = 0.0,
        lr: float = 1e-4,
        iterations: int = 50,
        reset_optimizer: bool = False,
        fast_path: bool = True,
    ) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        super().__init__(model)
        modules = list(modules)
        if not modules or r < 1 or iterations < 1:
            raise ValueError(f"LoRA: need modules, r >= 1, iterations >= 1; got {modules}, {r}")
        layers = [fc_layer(model, m) for m in modules]  # fail naming a wrong module path
        conv1d = {isinstance(layer, Conv1D) for layer in layers}
        if len(conv1d) > 1:
            raise ValueError("LoRA: the modules mix nn.Linear and Conv1D layers")
        self.modules, self.lr, self.iterations = modules, lr, iterations
        self.reset_optimizer, self.fast_path = reset_optimizer, fast_path
        self.start = min(block_of(model, m) for m in modules)  # every adapter sits at or above it
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=modules,  # full dotted paths: exact matches only
            fan_in_fan_out=conv1d.pop(),  # GPT-2's Conv1D stores W as (in, out)
            bias="none",
        )
        inject_adapter_in_model(config, model.hf)  # B = 0: the model's function is unchanged
        self.adapters = {n: p for n, p in model.hf.named_parameters() if ".lora_" in n}
        for p in self.adapters.values():
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.adapters.values(), lr=lr)

    def extra_params(self) -> int:
        return sum(p.numel() for p in self.adapters.values())

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        enc = self.encode(batch)
        if self.reset_optimizer:
            self.optimizer = torch.optim.Adam(self.adapters.values(), lr=self.lr)
        hidden = trunk.block_input(self.model, self.start, enc) if self.fast_path else None
        for _ in range(self.iterations):
            logits = target_logits(self.model, enc, self.start, hidden)
            loss = F.cross_entropy(logits.float(), enc.target_ids)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.item()}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {n: p.detach().cpu().contiguous() for n, p in self.adapters.items()}
        return tensors, {"method": self.name, "modules": self.modules}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if sorted(tensors) != sorted(self.adapters):
            raise ValueError(
                f"LoRA state holds {sorted(tensors)[:4]}..., not this editor's adapters"
            )
        for n, p in self.adapters.items():
            p.copy_(tensors[n].to(p))
