"""Turning (prompt, target) pairs into teacher-forcing batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Encoded:
    """A right-padded batch of prompt + target sequences for teacher forcing."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), -100 everywhere but the target tokens
    prompt_last: torch.Tensor  # (B,), index of the last prompt token (the routing query)

    def to(self, device: torch.device | str) -> Encoded:
        return Encoded(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.labels, self.prompt_last)
            )
        )

    @property
    def target_mask(self) -> torch.Tensor:
        """(B, T) True at positions whose *next* token is a target token."""
        mask = torch.zeros_like(self.labels, dtype=torch.bool)
        mask[:, :-1] = self.labels[:, 1:] != -100
        return mask

    @property
    def target_ids(self) -> torch.Tensor:
        """(n_targets,) the target tokens, in the order of ``logits[target_mask]``."""
        shifted = self.labels[:, 1:]
        return shifted[shifted != -100]


def split_ids(tokenizer: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the target as it continues the prompt after a space."""
    if not target.strip():
        raise ValueError(f"empty target for prompt {prompt!r}")
    prompt_ids = tokenizer(prompt).input_ids
    full_ids = tokenizer(f"{prompt} {target}").input_ids
    if full_ids[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, full_ids[len(prompt_ids) :]
    # A tokenizer merged across the boundary: tokenize the target on its own.
    return prompt_ids, tokenizer(f" {target}", add_special_tokens=False).input_ids


def subject_last_token(tokenizer: Any, text: str, subject_end: int) -> int:
    """Index of the token holding character ``subject_end - 1`` of ``text``."""
    offsets = tokenizer(text, return_offsets_mapping=True).offset_mapping
    return max(i for i, (s, e) in enumerate(offsets) if e > s and s < subject_end)


def last_mention(tokenizer: Any, text: str, subject: str) -> int:
    """Index of the token holding the last character of the last mention of ``subject`` in
    ``text``; the last token where ``subject`` is empty or not in ``text``."""
    end = text.rfind(subject) + len(subject) if subject and subject in text else len(text)
    return subject_last_token(tokenizer, text, end)


def encode(
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    device: torch.device | str = "cpu",
) -> Encoded:
    """Right-padded prompt+target batch with labels on the target tokens only."""
    pairs = [split_ids(tokenizer, p, t) for p, t in zip(prompts, targets, strict=True)]
    width = max(len(p) + len(t) for p, t in pairs)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    prompt_last = torch.empty(len(pairs), dtype=torch.long)
    for row, (p, t) in enumerate(pairs):
        ids = p + t
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, len(p) : len(ids)] = torch.tensor(t)
        attention_mask[row, : len(ids)] = 1
        prompt_last[row] = len(p) - 1
    return Encoded(input_ids, attention_mask, labels, prompt_last).to(device)


def left_pad(
    rows: Sequence[list[int]], pad: int, width: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, T) input ids and attention mask, T >= ``width``: the last prompt token is
    column T-1 of every row."""
    width = max([width, *(len(r) for r in rows)])
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask
