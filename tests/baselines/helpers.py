"""Hand-built edits with one-token targets (a tiny random model can make those its argmax)."""

from __future__ import annotations

import torch

from elder.editor import EditRecord
from elder.encoding import encode

FACTS = [
    ("The capital of France is", "Rome", "France's capital is"),
    ("The Eiffel Tower is in", "Berlin", "The Eiffel Tower stands in"),
    ("Water is made of", "gold", "Water consists of"),
    ("The author of Hamlet is", "Dickens", "Hamlet was written by"),
]


def records(n: int = 4) -> list[EditRecord]:
    """``n`` edits (n <= 8): each fact, then each fact with a different target."""
    out = [EditRecord(p, t, r, "The sky is", "blue") for p, t, r in FACTS]
    out += [EditRecord(p, "blue", r, "The sky is", "blue") for p, _, r in FACTS]
    return out[:n]


def argmax_hits(editor, batch: list[EditRecord]) -> torch.Tensor:
    """(B,) whether every target token of each edit is the edited model's argmax."""
    tok = editor.model.tokenizer
    enc = encode(tok, [r.prompt for r in batch], [r.target for r in batch], editor.model.device)
    logits = editor.forward(enc).logits
    hits = []
    for row in range(len(batch)):
        mask = enc.target_mask[row]
        target = enc.labels[row, 1:][enc.labels[row, 1:] != -100]
        hits.append(bool((logits[row][mask].argmax(-1) == target).all()))
    return torch.tensor(hits)


def base_params_unchanged(model, before: dict[str, torch.Tensor]) -> None:
    """Every base weight is still where it was (wrapped layers keep it under base_layer)."""
    after = dict(model.hf.named_parameters())
    after.update({k.replace(".base_layer.", "."): v for k, v in after.items()})
    for name, value in before.items():
        assert torch.equal(after[name], value), name


def logits(model, batch: list[EditRecord]) -> torch.Tensor:
    enc = encode(model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    return model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
