"""LoRA: one plain LoRA (Hu et al. 2021, through HF PEFT) trained on each edit batch in turn.

The "LoRA" row of the ELDER paper's Table 1: the same FC layers as ELDER, one adapter per
layer, no routing and no protection of earlier edits (so later batches overwrite earlier
ones). Adapters are injected in place with ``peft.inject_adapter_in_model``, which keeps the
model's top-level structure, so module paths (``LoadedModel.blocks``) still resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from baselines._common import block_of, target_logits
from baselines.one_layer import fc_layer
from elder import saved, trunk
from elder.editor import Editor, EditRecord
from elder.models import LoadedModel


@dataclass
class LoRAConfig:
    """Hyperparameters of the LoRA baseline; defaults are ELDER's, for a like-for-like row."""

    modules: list[str]  # the FC layers that get an adapter (ELDER's blocks)
    r: int = 8  # LoRA rank
    alpha: float = 8.0  # scale alpha / r
    dropout: float = 0.0  # PEFT's default
    lr: float = 1e-4  # Adam
    iterations: int = 50  # optimisation steps per edit batch
    reset_optimizer: bool = False  # a fresh Adam per batch (false: one Adam for the stream)
    fast_path: bool = True  # cache the frozen blocks below the first adapter while training

    def __post_init__(self) -> None:
        if not self.modules or self.r < 1 or self.iterations < 1:
            raise ValueError(
                f"LoRA: need modules, r >= 1, iterations >= 1; got {self.modules}, r={self.r}, "
                f"iterations={self.iterations}"
            )


class LoRA(Editor):
    """Plain LoRA on ``modules``; Adam over the adapters, ``iterations`` steps per batch."""

    name = "lora"
    config_class = LoRAConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        super().__init__(model, **config)
        cfg = self.config
        cfg.modules = list(cfg.modules)
        layers = [fc_layer(model, m) for m in cfg.modules]  # fail naming a wrong module path
        conv1d = {isinstance(layer, Conv1D) for layer in layers}
        if len(conv1d) > 1:
            raise ValueError("LoRA: the modules mix nn.Linear and Conv1D layers")
        self.start = min(block_of(model, m) for m in cfg.modules)  # every adapter is at/above it
        peft_config = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=cfg.modules,  # full dotted paths: exact matches only
            fan_in_fan_out=conv1d.pop(),  # GPT-2's Conv1D stores W as (in, out)
            bias="none",
        )
        inject_adapter_in_model(peft_config, model.hf)  # B = 0: the model's function is unchanged
        self.adapters = {n: p for n, p in model.hf.named_parameters() if ".lora_" in n}
        for p in self.adapters.values():
            p.requires_grad_(True)
        self.optimizer = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.adapters.values(), lr=self.config.lr)

    def extra_params(self) -> int:
        return sum(p.numel() for p in self.adapters.values())

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        cfg = self.config
        enc = self.encode(batch)
        if cfg.reset_optimizer:
            self.optimizer = self._new_optimizer()
        hidden = trunk.block_input(self.model, self.start, enc) if cfg.fast_path else None
        for _ in range(cfg.iterations):
            logits = target_logits(self.model, enc, self.start, hidden)
            loss = F.cross_entropy(logits.float(), enc.target_ids)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.item()}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The adapters and the Adam that carries across batches (so a resume is exact)."""
        tensors = {n: p.detach().cpu().contiguous() for n, p in self.adapters.items()}
        moments, optimizer = saved.optimizer_state(self.optimizer)
        tensors.update({f"optimizer.{k}": v for k, v in moments.items()})
        return tensors, {
            "method": self.name,
            "modules": self.config.modules,
            "optimizer": optimizer,
        }

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        adapters = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
        if sorted(adapters) != sorted(self.adapters):
            raise ValueError(
                f"LoRA state holds {sorted(adapters)[:4]}..., not this editor's adapters"
            )
        for n, p in self.adapters.items():
            p.copy_(adapters[n].to(p))
        self.optimizer = self._new_optimizer()
        if "optimizer" in meta:  # saved before 2026-12-01: adapters only (resume not exact)
            saved.load_optimizer_state(
                self.optimizer, saved.part(tensors, "optimizer"), meta["optimizer"]
            )
