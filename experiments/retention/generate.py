"""Batched greedy generation for the retention tasks, through the editor interface.

Prompts are tokenized one by one, cut from the left to fit the context, sorted by length (less
padding) and left-padded by hand, so the tokenizer's shared padding side ("right", used for
teacher forcing) is never touched. Early stopping at a newline is done by temporarily adding
the stop tokens to the model's ``generation_config.eos_token_id`` (restored afterwards), which
``Editor.generate`` and a plain ``hf.generate`` both honour.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from elder.editor import GenerateOutput
from elder.models import LoadedModel

GenerateFn = Callable[[torch.Tensor, torch.Tensor, int], GenerateOutput]


@dataclass
class Generation:
    """One prompt's generated tokens (up to the stop token), decoded text, and method info."""

    tokens: list[int]
    text: str
    info: dict[str, float] = field(default_factory=dict)
    truncated: bool = False  # the prompt was cut from the left to fit the context


def base_generate(model: LoadedModel) -> GenerateFn:
    """The unedited model: a plain greedy ``generate`` (the call ``Editor.generate`` makes)."""

    @torch.no_grad()
    def generate(
        input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int
    ) -> GenerateOutput:
        sequences = model.hf.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
        )
        return GenerateOutput(sequences[:, input_ids.shape[1] :])

    return generate


@functools.lru_cache(maxsize=8)
def _stop_ids(tokenizer: Any, stop: str) -> tuple[int, ...]:
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple(i for i, text in enumerate(texts) if stop in text)


def stop_token_ids(tokenizer: Any, stop: str | None) -> list[int]:
    """Every vocabulary token whose text contains ``stop`` (plus EOS): a row ends at one."""
    ids = [] if stop is None else list(_stop_ids(tokenizer, stop))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


@contextmanager
def stopping_at(model: LoadedModel, stop_ids: list[int]) -> Iterator[None]:
    """Make ``generate`` end a row at any of ``stop_ids``; the old setting comes back after."""
    config = model.hf.generation_config
    old = config.eos_token_id
    config.eos_token_id = list(stop_ids)
    try:
        yield
    finally:
        config.eos_token_id = old


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, T) input ids and attention mask: the last prompt token is column T-1."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def generate_all(
    generate: GenerateFn,
    model: LoadedModel,
    prompts: list[str],
    max_new_tokens: int,
    stop: str | None,
    batch_size: int,
    desc: str = "generate",
) -> list[Generation]:
    """Greedy outputs of ``generate`` for every prompt, in the prompts' order."""
    tok = model.tokenizer
    max_new_tokens = min(max_new_tokens, model.max_length // 2)  # tiny test models: 128 positions
    budget = model.max_length - max_new_tokens
    encoded = [tok(p).input_ids for p in prompts]
    truncated = [len(ids) > budget for ids in encoded]
    encoded = [ids[-budget:] for ids in encoded]  # keep the end: the question and answer cue
    stop_ids = stop_token_ids(tok, stop)
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
    out: list[Generation | None] = [None] * len(prompts)
    with stopping_at(model, stop_ids):
        for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
            rows = order[start : start + batch_size]
            ids, mask = left_pad([encoded[i] for i in rows], tok.pad_token_id)
            result = generate(ids.to(model.device), mask.to(model.device), max_new_tokens)
            for j, i in enumerate(rows):
                tokens = result.tokens[j].tolist()
                cut = next((k for k, t in enumerate(tokens) if t in stop_ids), len(tokens))
                out[i] = Generation(
                    tokens[:cut],
                    tok.decode(tokens[: cut + 1], skip_special_tokens=True),
                    {k: float(v[j]) for k, v in result.info.items()},
                    truncated[i],
                )
    return out  # type: ignore[return-value]
