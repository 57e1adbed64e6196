"""Protecting what an edit trained (issue #24's ``protect=null_space``).

With ``route=memory`` a stored edit always gets the same allocation, so only the LoRAs it was
allocated can change its output, and they change it only through the inputs it feeds them.
For every (MoLoRA layer l, LoRA e) keep an orthonormal basis U_{l,e} (in, m) of the FC inputs
v that the stored edits allocated to e produced at l, and the anchor C_{l,e} = A_{l,e} U_{l,e}
(r, m) as it was when each direction was added. After every optimisation step:

    A_{l,e}  <-  A_{l,e} - (A_{l,e} U_{l,e} - C_{l,e}) U_{l,e}ᵀ      so  A_{l,e} U_{l,e} = C_{l,e}
    y = W0 v + (α/r) B_{l,e} A_{l,e} v                              B frozen (random), A from 0

i.e. the update is projected off the basis, against the anchor so that rounding cannot pile up
over the stream. B is frozen because a change of B would reach every stored v through A v
(only r numbers). By induction over the layers (the blocks below the first MoLoRA layer are
frozen, attention stays within a sequence), a stored edit's hidden states, and so its
teacher-forced prediction, do not move when later batches train: up to the part of each
stored input, at most ``tol`` of its norm, that the basis leaves out. The parameter count
stays constant; the bases grow with the stream (at most ``in`` columns per LoRA) and are
counted as stored memory. A LoRA whose basis fills its ``in`` dimensions can no longer train.
"""

from __future__ import annotations

import warnings

import torch


class NullSpace:
    """Per MoLoRA layer and LoRA: the basis of the FC inputs of the edits stored on it."""

    def __init__(
        self,
        num_layers: int,
        num_experts: int,
        r: int,
        in_features: int,
        tol: float,
        device: torch.device | str = "cpu",
    ) -> None:
        self.in_features, self.tol = in_features, tol

        def empty(rows: int) -> list[list[torch.Tensor]]:
            return [
                [torch.zeros(rows, 0, device=device) for _ in range(num_experts)]
                for _ in range(num_layers)
            ]

        self.bases = empty(in_features)  # [l][e]: U (in, m), float32
        self.anchors = empty(r)  # [l][e]: C = A U (r, m), float32

    def add(self, layer: int, expert: int, keys: torch.Tensor, lora_A: torch.Tensor) -> None:
        """Extend U_{layer,expert} by the directions of keys (n, in) it lacks, so that each
        key keeps at most ``tol`` of its norm outside it; anchor them at lora_A (r, in)."""
        basis = self.bases[layer][expert]
        keys = keys.detach().to(basis.device, torch.float32)
        keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n, in), unit rows
        residual = keys - (keys @ basis) @ basis.T  # what the basis misses of each key
        _, s, vh = torch.linalg.svd(residual, full_matrices=False)
        new = vh[s > self.tol]  # (m_new, in): the rest lies below tol in every key
        if not new.shape[0]:
            return
        new = new - (new @ basis) @ basis.T  # once more, against rounding
        q, _ = torch.linalg.qr(new.T)  # (in, m_new)
        self.bases[layer][expert] = torch.cat([basis, q], dim=1)
        if self.bases[layer][expert].shape[1] >= self.in_features:
            warnings.warn(
                f"ELDER protect: LoRA {expert} of MoLoRA layer {layer} has no free input "
                "direction left; edits allocated to it can no longer train",
                stacklevel=2,
            )
        anchor = lora_A.detach().to(q.device, torch.float32) @ q  # (r, m_new)
        self.anchors[layer][expert] = torch.cat([self.anchors[layer][expert], anchor], dim=1)

    @torch.no_grad()
    def project(self, layer: int, lora_A: torch.Tensor) -> None:
        """Hold A U = C for every LoRA of one layer: lora_A (N, r, in), in place."""
        pairs = zip(self.bases[layer], self.anchors[layer], strict=True)
        for e, (basis, anchor) in enumerate(pairs):
            if basis.shape[1]:
                drift = lora_A[e].float() @ basis - anchor  # (r, m)
                lora_A[e] -= (drift @ basis.T).to(lora_A.dtype)

    def ranks(self) -> torch.Tensor:
        """m_{l,e}: the protected dimensions of every LoRA, (L, N)."""
        return torch.tensor([[b.shape[1] for b in layer] for layer in self.bases])

    def nbytes(self) -> int:
        tensors = [t for part in (self.bases, self.anchors) for layer in part for t in layer]
        return sum(t.numel() * t.element_size() for t in tensors)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            f"{name}.{i}.{e}": t
            for name, part in (("basis", self.bases), ("anchor", self.anchors))
            for i, layer in enumerate(part)
            for e, t in enumerate(layer)
        }

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        parts = {"basis": self.bases, "anchor": self.anchors}
        for key, t in tensors.items():
            name, i, e = key.split(".")
            part = parts[name]
            part[int(i)][int(e)] = t.to(part[int(i)][int(e)].device, torch.float32).clone()
