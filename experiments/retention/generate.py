"""Batched greedy generation for the retention tasks, through the editor interface.

Prompts are tokenized one by one, cut from the left to fit the context, sorted by length,
batched so that padding stays cheap (:func:`batches`) and left-padded by hand, so the
tokenizer's shared padding side ("right", used for teacher forcing) is never touched. A row
ends at EOS, after the task's token budget, or at the first stop string that follows
non-blank text (:class:`StopAfterText`, handed to ``Editor.generate``, which every method
passes on to ``hf.generate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from elder.editor import GenerateOutput
from elder.encoding import left_pad
from elder.models import LoadedModel

GenerateFn = Callable[[torch.Tensor, torch.Tensor, int, StoppingCriteria | None], GenerateOutput]


@dataclass
class Generation:
    """One prompt's generated tokens (up to EOS), decoded text, and method info."""

    tokens: list[int]
    text: str
    info: dict[str, float] = field(default_factory=dict)
    truncated: bool = False  # the prompt was cut from the left to fit the context


def base_generate(model: LoadedModel) -> GenerateFn:
    """The unedited model: a plain greedy ``generate`` (the call ``Editor.generate`` makes)."""

    @torch.no_grad()
    def generate(
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        stop: StoppingCriteria | None = None,
    ) -> GenerateOutput:
        sequences = model.hf.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
            stopping_criteria=None if stop is None else StoppingCriteriaList([stop]),
        )
        return GenerateOutput(sequences[:, input_ids.shape[1] :])

    return generate


class StopAfterText(StoppingCriteria):
    """Ends a row at the first ``stop`` string that follows non-blank generated text.

    Stopping at the first newline outright would end every answer that the model opens with a
    line break (SmolLM2 does so on a third of SAMSum dialogues) before it says anything. The check
    decodes each row's new tokens at every step: cheap next to one forward pass of the model.
    """

    def __init__(self, tokenizer: Any, stop: str, prompt_width: int) -> None:
        self.tokenizer, self.stop, self.width = tokenizer, stop, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        done = [self.stop in text.lstrip() for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def batches(
    lengths: list[int], n_new: int, batch_size: int, max_padding: float | None = None
) -> list[list[int]]:
    """Prompt indices, longest first, cut into batches of at most ``batch_size`` rows.

    With ``max_padding``, a batch also ends before the row that would make its padded work,
    rows x (longest prompt + ``n_new``), exceed ``1 + max_padding`` times its real work, the
    sum of (prompt + ``n_new``). Long-tailed prompts with short answers (NQ, SAMSum) then get
    short batches, where padding would be paid in prefill, and decode-bound tasks (GSM8K: 128
    new tokens) full ones, whose rows share each step's read of the weights.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        rows = out[-1] if out else []
        real = sum(lengths[j] + n_new for j in rows) + lengths[i] + n_new
        padded = (len(rows) + 1) * (lengths[rows[0]] + n_new) if rows else real
        full = len(rows) == batch_size
        if not rows or full or (max_padding is not None and padded > (1 + max_padding) * real):
            out.append([i])
        else:
            rows.append(i)
    return out


def generate_all(
    generate: GenerateFn,
    model: LoadedModel,
    prompts: list[str],
    max_new_tokens: int,
    stop: str | None,
    batch_size: int,
    desc: str = "generate",
    max_padding: float | None = None,
) -> list[Generation]:
    """Greedy outputs of ``generate`` for every prompt, in the prompts' order (batches as
    :func:`batches` forms them)."""
    tok = model.tokenizer
    max_new_tokens = min(max_new_tokens, model.max_length // 2)  # tiny test models: 128 positions
    budget = model.max_length - max_new_tokens
    encoded = [tok(p).input_ids for p in prompts]
    truncated = [len(ids) > budget for ids in encoded]
    encoded = [ids[-budget:] for ids in encoded]  # keep the end: the question and answer cue
    groups = batches([len(ids) for ids in encoded], max_new_tokens, batch_size, max_padding)
    ends = {tok.eos_token_id, tok.pad_token_id} - {None}
    out: list[Generation | None] = [None] * len(prompts)
    for rows in tqdm(groups, desc=desc, leave=False):
        ids, mask = left_pad([encoded[i] for i in rows], tok.pad_token_id)
        criterion = None if stop is None else StopAfterText(tok, stop, ids.shape[1])
        result = generate(ids.to(model.device), mask.to(model.device), max_new_tokens, criterion)
        for j, i in enumerate(rows):
            tokens = result.tokens[j].tolist()
            cut = next((k for k, t in enumerate(tokens) if t in ends), len(tokens))
            out[i] = Generation(
                tokens[:cut],
                tok.decode(tokens[:cut], skip_special_tokens=True),
                {k: float(v[j]) for k, v in result.info.items()},
                truncated[i],
            )
    return out  # type: ignore[return-value]
