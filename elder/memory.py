"""ELDER's edit memory (issue #24's options): the stored queries, allocations and edits.

    route=memory:  alloc(x) = alloc(e*),  e* = argmax_e cos(q(x), q_e)
                   defer x  where  1 - cos(q(x), q_e*) > radius
    query_pool=subject:  q_e = h_e at the last token of e's subject, and an input is matched
                   at its best prompt token t:  cos(q(x), q_e) = max_t cos(h_x[t], q_e)
    rehearse=m:    each edit batch also trains m stored edits drawn at random (seeded)

The query of an input is read below the first MoLoRA layer, where the model is frozen, so a
stored query is what the same prompt gives at any later time: routing by the nearest stored
query cannot drift for a stored edit. What it costs is memory that grows with the stream:
one query vector per edit, and the edit's text where edits are rehearsed.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from elder.editor import EditRecord


def pool(
    h: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_last: torch.Tensor,
    how: str,
    subject_last: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each sequence's query from the hidden states h (B, T, d) -> (B, d), or (B, T, d).

    ``last``: the vector at the last prompt token. ``mean``: the mean over the prompt's
    tokens after its first one (the first token of a sequence holds the attention sink's
    outlier norm in most LMs, BOS or not); a one-token prompt gives that token. ``subject``:
    an edit's query is the vector at its subject's last token ``subject_last`` (B,); any other
    input's is the set of those same prompt tokens (B, T, d), zero elsewhere, which
    ``QueryMemory.nearest`` matches token by token. Padding on either side is skipped.
    """
    rows = torch.arange(h.shape[0], device=h.device)
    if how == "last":
        return h[rows, prompt_last]
    if how == "subject" and subject_last is not None:
        return h[rows, subject_last]
    positions = torch.arange(h.shape[1], device=h.device)[None]  # (1, T)
    real = attention_mask.bool() & (positions <= prompt_last[:, None])  # (B, T) the prompt
    first = real.int().argmax(1)  # (B,) first real token (rows may be left-padded)
    tail = real & (positions > first[:, None])
    tail[rows, first] |= ~tail.any(1)  # a one-token prompt keeps its token
    h = torch.where(tail[..., None], h, 0)  # padding (even NaN) cannot leak into the query
    if how == "subject":
        return h  # (B, T, d)
    weights = tail.to(h.dtype) / tail.sum(1, keepdim=True).to(h.dtype)  # (B, T)
    return torch.einsum("bt,btd->bd", weights, h)


def similarity(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (B, M) of queries (B, d) to unit keys (M, d); a token set (B, T, d)
    (``pool(..., "subject")``) counts its best token, its all-zero tokens none."""
    q = F.normalize(queries.detach().float().cpu(), dim=-1)
    sim = q @ keys.T  # (B, M) or (B, T, M)
    if q.dim() == 2:
        return sim
    outside = (q == 0).all(-1, keepdim=True)  # (B, T, 1) tokens not in the set
    return sim.masked_fill(outside, -1.0).max(1).values


class QueryMemory:
    """Every stored edit's query (unit length, float32) and its allocation."""

    def __init__(self) -> None:
        self.keys = torch.empty(0, 0)  # (M, d)
        self.allocations = torch.empty(0, 0, 0, dtype=torch.long)  # (M, L, k)

    def __len__(self) -> int:
        return self.keys.shape[0]

    def add(self, queries: torch.Tensor, allocations: torch.Tensor) -> None:
        """Store queries (B, d) and their allocations (B, L, k)."""
        keys = F.normalize(queries.detach().float(), dim=-1).cpu()
        allocations = allocations.detach().cpu()
        if len(self):
            keys, allocations = (
                torch.cat([self.keys, keys]),
                torch.cat([self.allocations, allocations]),
            )
        self.keys, self.allocations = keys, allocations

    def nearest(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine distance (B,) to the nearest stored query of queries (B, d) or token sets
        (B, T, d), and that edit's index (B,); distance 2 (the largest) where nothing is
        stored."""
        if not len(self):
            b = queries.shape[0]
            return torch.full((b,), 2.0), torch.zeros(b, dtype=torch.long)
        best, index = similarity(queries, self.keys).max(-1)  # (B, M) -> (B,)
        return 1 - best, index

    def nbytes(self) -> int:
        return self.keys.numel() * 4 + self.allocations.numel() * 8

    def state(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "allocations": self.allocations}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.keys = tensors["keys"].float().clone()
        self.allocations = tensors["allocations"].long().clone()


class Rehearsal:
    """The edits taken so far, as text, and the seeded draw of those each batch replays."""

    def __init__(self, seed: int = 0) -> None:
        self.records: list[EditRecord] = []
        self.generator = torch.Generator().manual_seed(seed)

    def add(self, records: list[EditRecord]) -> None:
        self.records.extend(records)

    def sample(self, m: int) -> list[EditRecord]:
        """Up to m stored edits, drawn without replacement."""
        if m <= 0 or not self.records:
            return []
        order = torch.randperm(len(self.records), generator=self.generator)[:m]
        return [self.records[i] for i in order.tolist()]

    def nbytes(self) -> int:
        """UTF-8 bytes of the stored prompts and targets."""
        return sum(len(r.prompt.encode()) + len(r.target.encode()) for r in self.records)

    def state(self) -> tuple[dict[str, torch.Tensor], list[dict]]:
        return {"generator": self.generator.get_state()}, [asdict(r) for r in self.records]

    def load_state(self, tensors: dict[str, torch.Tensor], records: list[dict]) -> None:
        self.records = [EditRecord(**r) for r in records]
        self.generator.set_state(tensors["generator"].clone())
