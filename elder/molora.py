"""The mixture-of-LoRA (MoLoRA) layer: N LoRAs and a router around one frozen FC layer.

    s(x)  = softmax(W_r x)                                  router scores, x = the query
    ΔW    = Σ_{i ∈ topk(s)} s_i(x) · (α/r) B_i A_i           raw (not renormalised) scores
    y     = W0 v + ΔW v + b                                 for every token v of the sequence

One mixture per *sequence*: the gates come from the sequence's query vector and every token
of that sequence uses them. The base layer is kept as it is (never copied, never
re-initialised), so a sequence the editor defers gets exactly the base layer's output.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def io_features(layer: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a GPT-2 Conv1D."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if isinstance(layer, Conv1D):
        return layer.weight.shape[0], layer.weight.shape[1]  # Conv1D stores W as (in, out)
    raise TypeError(f"MoLoRA wraps nn.Linear or Conv1D, not {type(layer).__name__}")


class MoLoRALayer(nn.Module):
    """A frozen FC layer plus N LoRA experts and the router that mixes them."""

    def __init__(
        self,
        base_layer: nn.Module,
        query_dim: int,
        num_experts: int,
        r: int,
        alpha: float,
        lora_init: str = "reference",
        frozen_B: bool = False,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        in_f, out_f = io_features(base_layer)
        ref = base_layer.weight
        self.num_experts, self.r, self.scale = num_experts, r, alpha / r
        self.router = nn.Linear(
            query_dim, num_experts, bias=False, device=ref.device, dtype=ref.dtype
        )  # W_r: (N, d)
        self.lora_A = nn.Parameter(
            torch.empty(num_experts, r, in_f, device=ref.device, dtype=ref.dtype)
        )  # (N, r, in)
        self.lora_B = nn.Parameter(
            torch.zeros(num_experts, out_f, r, device=ref.device, dtype=ref.dtype)
        )  # (N, out, r), zero: ΔW = 0 (frozen_B: random, and A zero instead)
        # kaiming_uniform_(a=√5) draws U(±1/√fan_in). The reference stores A as (in, r), so its
        # fan_in is r: U(±1/√r). PEFT stores A as (r, in): U(±1/√in), 14x smaller at in=1536.
        bound = 1 / math.sqrt(r if lora_init == "reference" else in_f)
        for a in self.lora_A:
            nn.init.uniform_(a, -bound, bound)
        if frozen_B:  # elder.protect: B drawn from A's law and frozen, A from zero (ΔW = 0)
            nn.init.uniform_(self.lora_B, -bound, bound)
            nn.init.zeros_(self.lora_A)
            self.lora_B.requires_grad_(False)
        # Set per forward by the editor: gates (B, N) with zeros off the top-k, and the rows
        # whose MoLoRA is on. None means "off": the layer is then its base layer.
        self.gates: torch.Tensor | None = None
        self.active: torch.Tensor | None = None

    def scores(self, query: torch.Tensor) -> torch.Tensor:
        """Router scores s(x) = softmax(W_r x); query (B, d) -> (B, N)."""
        return torch.softmax(self.router(query), dim=-1)

    def delta(self, v: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """Σ_i g_i (α/r) B_i A_i v for v (B, T, in) -> (B, T, out).

        gates: (B, N), one mixture per sequence; or (B, T, N) when several sequences are packed
        into one row, each token carrying its own sequence's gates.
        """
        if gates.dim() == 2:
            gates = gates[:, None, :]  # (B, 1, N): the same mixture for every token
        z = torch.einsum("bti,nri->btnr", v, self.lora_A)  # (B, T, N, r)
        z = z * gates[..., None]
        return torch.einsum("btnr,nor->bto", z, self.lora_B) * self.scale

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(v)
        if self.gates is None:
            return out
        edited = out + self.delta(v, self.gates).to(out.dtype)
        if self.active is None:
            return edited
        return torch.where(self.active[:, None, None], edited, out)  # deferred rows: base only
