"""Protecting what an edit trained (issue #24's ``protect=null_space``).

With ``route=memory`` a stored edit always gets the same allocation, so only the LoRAs it was
allocated can change its output, and they change it only through the inputs it feeds them.
For every (MoLoRA layer l, LoRA e) keep an orthonormal basis U_{l,e} (in, m) of the FC inputs
v that the stored edits allocated to e produced at l (every real token of prompt + target),
and project every later update of A_{l,e} off it:

    ΔA_{l,e}  <-  ΔA_{l,e} (I - U_{l,e} U_{l,e}ᵀ)      so      A_{l,e} v  is unchanged
    y = W0 v + (α/r) B_{l,e} A_{l,e} v                  with B frozen (random), A from zero

B is frozen because a change of B would reach every stored v through A v (only r numbers).
By induction over the layers (the blocks below the first MoLoRA layer are frozen), a stored
edit's hidden states, and so its teacher-forced prediction, do not move when later batches
train: up to the directions dropped by ``tol``. The parameter count stays constant; the bases
grow with the stream (at most ``in`` columns per LoRA) and are counted as stored memory.
"""

from __future__ import annotations

import torch


class NullSpace:
    """Per MoLoRA layer and LoRA: the basis of the FC inputs of the edits stored on it."""

    def __init__(self, num_layers: int, num_experts: int, in_features: int, tol: float) -> None:
        self.tol = tol
        self.bases = [
            [torch.zeros(in_features, 0) for _ in range(num_experts)] for _ in range(num_layers)
        ]  # [l][e]: (in, m_{l,e})

    def add(self, layer: int, expert: int, keys: torch.Tensor) -> None:
        """Extend U_{layer,expert} by the directions of keys (n, in) it lacks: singular
        directions of the residual above ``tol`` times the keys' largest singular value."""
        keys = keys.detach().float().cpu()
        if not keys.shape[0]:
            return
        basis = self.bases[layer][expert]
        residual = keys - (keys @ basis) @ basis.T  # (n, in), orthogonal to the basis
        _, s, vh = torch.linalg.svd(residual, full_matrices=False)
        largest = torch.linalg.matrix_norm(keys, ord=2)
        new = vh[s > self.tol * largest]  # (m_new, in), orthonormal, ⟂ basis up to rounding
        if not new.shape[0]:
            return
        new = new - (new @ basis) @ basis.T  # once more, against rounding
        q, _ = torch.linalg.qr(new.T)  # (in, m_new)
        self.bases[layer][expert] = torch.cat([basis, q], dim=1)

    @torch.no_grad()
    def project(self, layer: int, lora_A: torch.Tensor, before: torch.Tensor) -> None:
        """Project the update lora_A - before (N, r, in) of one layer off each LoRA's basis,
        in place."""
        for e, basis in enumerate(self.bases[layer]):
            if basis.shape[1]:
                u = basis.to(lora_A.device, lora_A.dtype)
                delta = lora_A[e] - before[e]  # (r, in)
                lora_A[e] -= (delta @ u) @ u.T

    def ranks(self) -> torch.Tensor:
        """m_{l,e}: the protected dimensions of every LoRA, (L, N)."""
        return torch.tensor([[b.shape[1] for b in layer] for layer in self.bases])

    def nbytes(self) -> int:
        return sum(b.numel() * 4 for layer in self.bases for b in layer)

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{e}": b for i, layer in enumerate(self.bases) for e, b in enumerate(layer)}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for key, basis in tensors.items():
            i, e = map(int, key.split("."))
            self.bases[i][e] = basis.float().clone()
