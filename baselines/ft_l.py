"""FT-L: constrained fine-tuning of the FFN output weight of one layer.

The FT-L baseline of Meng et al. 2022 (ROME, Section 4 / Appendix): Adam on W_out of one
block, loss on the target tokens, and after every step each weight is clamped elementwise to
within ±ε of its original value (an L∞ norm constraint). Applied batch after batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from baselines._common import block_of, target_logits
from baselines.one_layer import fc_layer
from elder import trunk
from elder.editor import Editor, EditRecord
from elder.models import LoadedModel

CLAMP_REFERENCES = ("original", "batch")


@dataclass
class FTLConfig:
    """Hyperparameters of FT-L; defaults are the ROME reference's (``FT-L``, GPT2-XL)."""

    module: str  # the FC layer to fine-tune, e.g. "model.layers.20.mlp.down_proj"
    lr: float = 5e-4  # Adam
    iterations: int = 25  # optimisation steps per edit batch
    eps: float = 5e-4  # L∞ bound of the change of every weight
    stop_loss: float = 1e-2  # end a batch early once its loss is below this (the reference does)
    train_bias: bool = True  # also fine-tune the layer's bias where it has one (GPT-2)
    clamp_reference: str = "original"  # clamp around the original weights, or the batch's start
    fast_path: bool = True  # cache the frozen blocks below the layer while training

    def __post_init__(self) -> None:
        if self.clamp_reference not in CLAMP_REFERENCES:
            raise ValueError(f"FT-L: clamp_reference must be one of {CLAMP_REFERENCES}")
        if self.iterations < 1 or self.eps < 0:
            raise ValueError(
                f"FT-L: need iterations >= 1 and eps >= 0, got {self.iterations}, {self.eps}"
            )


class FTL(Editor):
    """Fine-tune one FC layer in place, within ±eps of the reference weights."""

    name = "ft_l"
    config_class = FTLConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        module = self.module = cfg.module
        self.lr, self.iterations, self.eps = cfg.lr, cfg.iterations, cfg.eps
        self.stop_loss, self.clamp_reference = cfg.stop_loss, cfg.clamp_reference
        self.fast_path = cfg.fast_path
        layer = fc_layer(model, module)
        self.start = block_of(model, module)  # blocks below it are frozen: the fast path applies
        self.params: dict[str, torch.nn.Parameter] = {"weight": layer.weight}
        if cfg.train_bias and layer.bias is not None:  # the reference trains every tensor of W_out
            self.params["bias"] = layer.bias
        self.originals = {k: p.detach().clone() for k, p in self.params.items()}

    def extra_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    @torch.no_grad()
    def _clamp(self, reference: dict[str, torch.Tensor]) -> None:
        """Project every trained tensor onto the L∞ ball of radius eps around the reference."""
        for key, p in self.params.items():
            p.copy_(torch.clamp(p, reference[key] - self.eps, reference[key] + self.eps))

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        enc = self.encode(batch)
        reference = (
            self.originals
            if self.clamp_reference == "original"
            else {k: p.detach().clone() for k, p in self.params.items()}
        )
        hidden = trunk.block_input(self.model, self.start, enc) if self.fast_path else None
        params = list(self.params.values())
        optimizer = torch.optim.Adam(params, lr=self.lr)  # a fresh Adam per call, as the reference
        for p in params:
            p.requires_grad_(True)
        steps = 0
        try:
            for _ in range(self.iterations):
                logits = target_logits(self.model, enc, self.start, hidden)
                loss = F.cross_entropy(logits.float(), enc.target_ids)
                if loss.item() < self.stop_loss:
                    break
                steps += 1
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self._clamp(reference)
        finally:
            for p in params:
                p.requires_grad_(False)
                p.grad = None
        return {"loss": loss.item(), "steps": float(steps)}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The change of each trained tensor from the unedited model's (a delta, not a copy)."""
        tensors = {
            f"{self.module}.{k}.delta": (p.detach() - self.originals[k]).cpu().contiguous()
            for k, p in self.params.items()
        }
        return tensors, {"method": self.name, "module": self.module, "eps": self.eps}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("module") != self.module:
            raise ValueError(f"FT-L state is for '{meta.get('module')}', not '{self.module}'")
        for k, p in self.params.items():
            p.copy_(self.originals[k] + tensors[f"{self.module}.{k}.delta"].to(p))
