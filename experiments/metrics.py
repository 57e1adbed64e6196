"""Edit metrics under teacher forcing (the paper's protocol: after the whole stream).

- exact match (the paper's reliability / generalization): every target token is the argmax;
  under greedy decoding this is the same event as "the generated answer equals the target";
- token accuracy (EasyEdit's ``*_tok``): the share of target tokens that are the argmax;
- locality: the share of unrelated prompts whose argmax tokens are unchanged from the
  unedited model's;
- neighborhood score (CounterFact's, on streams whose locality probes carry the edit's new
  target): the share of neighborhood prompts where the model still gives the true answer a
  higher mean token log-probability than the new target (ROME's ``neighborhood_prompts``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from elder.editor import Encoded, ForwardOutput
from elder.encoding import encode


@dataclass
class Prediction:
    """Argmax tokens at the target positions of one prompt, and what the method reported."""

    pred: list[int]
    target: list[int]
    info: dict[str, float] = field(default_factory=dict)
    logprob: float = float("nan")  # mean log-probability of the target tokens

    @property
    def exact(self) -> float:
        return float(self.pred == self.target)

    @property
    def token_acc(self) -> float:
        return sum(p == t for p, t in zip(self.pred, self.target, strict=True)) / len(self.target)


def predict(
    forward: Callable[[Encoded], ForwardOutput],
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    batch_size: int,
    device: torch.device,
    desc: str = "eval",
) -> list[Prediction]:
    """Teacher-forced argmax predictions of ``forward`` for each (prompt, target)."""
    out: list[Prediction] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, leave=False):
        enc = encode(
            tokenizer,
            prompts[start : start + batch_size],
            targets[start : start + batch_size],
            device,
        )
        with torch.no_grad():
            result = forward(enc)
        argmax = result.logits.argmax(-1)  # (B, T)
        mask = enc.target_mask
        shifted = enc.labels[:, 1:]
        for row in range(len(argmax)):
            info = {k: float(v[row]) for k, v in result.info.items()}
            target = shifted[row][shifted[row] != -100]  # (n,)
            logp = result.logits[row][mask[row]].float().log_softmax(-1)  # (n, V)
            logprob = logp.gather(-1, target[:, None]).mean().item()
            out.append(Prediction(argmax[row][mask[row]].tolist(), target.tolist(), info, logprob))
    return out


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def neighborhood_score(truth: list[Prediction], new: list[Prediction]) -> float:
    """CounterFact's neighborhood score: the truth still more likely than the new target."""
    return mean([float(t.logprob > n.logprob) for t, n in zip(truth, new, strict=True)])


def edit_metrics(
    edit: list[Prediction],
    rephrase: list[Prediction],
    locality: list[Prediction],
    base_locality: list[Prediction],
) -> dict[str, float]:
    """Reliability, generalization (exact and token), locality, and the method's info rates."""
    metrics = {
        "reliability": mean([p.exact for p in edit]),
        "generalization": mean([p.exact for p in rephrase]),
        "locality": mean(
            [float(p.pred == b.pred) for p, b in zip(locality, base_locality, strict=True)]
        ),
        "reliability_tok": mean([p.token_acc for p in edit]),
        "generalization_tok": mean([p.token_acc for p in rephrase]),
    }
    for split, preds in (("edit", edit), ("rephrase", rephrase), ("locality", locality)):
        for key in preds[0].info if preds else ():
            metrics[f"{key}_{split}"] = mean([p.info[key] for p in preds])
    return metrics
