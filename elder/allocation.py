"""Allocations, allocation codes and the Hamming lookup of ELDER's deferral (Algorithm 1).

An *allocation* picks k of the N LoRAs in each of the L MoLoRA layers: a (L, k) index tensor.
Its *allocation code* is the L·N boolean vector with ones at those experts, stored bit-packed
so that the distance to every stored code is one XOR and a popcount.
"""

from __future__ import annotations

import math

import torch

_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)


def capacity(num_layers: int, num_experts: int, k: int) -> int:
    """C(N, k)^L: how many distinct allocations there are (one per distinct label)."""
    return math.comb(num_experts, k) ** num_layers


def topk_code(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Allocation code of router scores (B, L, N): ones at each layer's top-k -> (B, L·N) bool."""
    code = torch.zeros_like(scores, dtype=torch.bool)
    code.scatter_(-1, scores.topk(k, dim=-1).indices, True)
    return code.flatten(1)


def pack(code: torch.Tensor) -> torch.Tensor:
    """Bit-pack boolean codes (B, L·N) -> (B, ceil(L·N / 8)) uint8."""
    b, n = code.shape
    padded = torch.zeros(b, math.ceil(n / 8) * 8, dtype=torch.uint8, device=code.device)
    padded[:, :n] = code.to(torch.uint8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=code.device)
    return (padded.view(b, -1, 8) * weights).sum(-1, dtype=torch.uint8)


def hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamming distance of packed codes (..., W) and (..., W), broadcast -> (...) int."""
    return _POPCOUNT.to(a.device)[(a ^ b).long()].sum(-1)


def min_hamming(codes: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """Distance from each packed code (B, W) to its nearest stored code (M, W) -> (B,) int."""
    if stored.shape[0] == 0:
        return torch.full((codes.shape[0],), torch.iinfo(torch.int32).max, dtype=torch.int32)
    return hamming(codes[:, None, :], stored[None, :, :]).min(-1).values  # (B, M) -> (B,)


class AllocationTable:
    """Pre-assigned allocations: one per label, distinct labels get distinct allocations.

    Allocations are drawn at random (seeded) the first time a label is seen, which is the
    same as drawing them all before the stream, without needing the stream in advance.
    """

    def __init__(self, num_layers: int, num_experts: int, k: int, seed: int = 0) -> None:
        self.num_layers, self.num_experts, self.k = num_layers, num_experts, k
        self.capacity = capacity(num_layers, num_experts, k)
        self.generator = torch.Generator().manual_seed(seed)
        self.by_label: dict[str, torch.Tensor] = {}
        self._taken: set[tuple[int, ...]] = set()

    def draw(self) -> torch.Tensor:
        """A random allocation, (L, k) sorted expert indices, not yet given to any label."""
        if len(self._taken) >= self.capacity:
            raise ValueError(
                f"all {self.capacity} allocations of C({self.num_experts},{self.k})"
                f"^{self.num_layers} are taken: more distinct labels than that"
            )
        while True:
            perm = torch.rand(self.num_layers, self.num_experts, generator=self.generator)
            alloc = perm.argsort(-1)[:, : self.k].sort(-1).values
            key = tuple(alloc.flatten().tolist())
            if key not in self._taken:
                self._taken.add(key)
                return alloc

    def __getitem__(self, label: str) -> torch.Tensor:
        if label not in self.by_label:
            self.by_label[label] = self.draw()
        return self.by_label[label]

    def batch(self, labels: list[str]) -> torch.Tensor:
        """Allocations of a batch of labels -> (B, L, k)."""
        return torch.stack([self[label] for label in labels])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Labels -> allocations, the taken set and the generator, so later draws continue."""
        labels = list(self.by_label)
        width = self.num_layers * self.k
        tensors = {
            "allocations": torch.stack([self.by_label[label] for label in labels])
            if labels
            else torch.empty(0, self.num_layers, self.k, dtype=torch.long),  # (M, L, k)
            "taken": torch.tensor(sorted(self._taken), dtype=torch.long).view(-1, width),
            "generator": self.generator.get_state(),
        }
        return tensors, {"labels": labels}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Restore what :meth:`state` returned."""
        allocations, labels = tensors["allocations"], meta["labels"]
        if allocations.shape[1:] != (self.num_layers, self.k) or len(labels) != len(allocations):
            raise ValueError(
                f"saved allocations have shape {tuple(allocations.shape)} for {len(labels)} "
                f"labels; this table needs (n, L={self.num_layers}, k={self.k})"
            )
        self.by_label = dict(zip(labels, allocations.clone(), strict=True))
        self._taken = {tuple(row) for row in tensors["taken"].tolist()}
        self.generator.set_state(tensors["generator"].clone())
