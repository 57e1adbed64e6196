"""Free decoding of the edit and rephrase probes: the answer the edited model generates.

Teacher forcing asks whether every target token is the argmax given the gold prefix. Free
decoding lets the method answer through its own ``generate`` path, greedily; the answer is cut
at EOS or at the first newline after text and compared with the target after SQuAD-style
normalisation (lower case, no punctuation, no articles):

- ``*_gen``: the normalised answer equals the normalised target;
- ``*_gen_prefix``: it begins with the target (the answer may go on). Under greedy decoding
  this is the teacher-forced exact match's own event, provided that the generate path routes
  as the teacher-forced pass does and the target is tokenized alike in both: the two columns
  side by side measure whether that holds.
"""

from __future__ import annotations

from collections.abc import Callable

from elder.encoding import split_ids
from elder.models import LoadedModel
from experiments import metrics as M
from experiments.retention.generate import Generation, generate_all
from experiments.retention.metrics import normalize_answer
from experiments.streams.stream import Probes

SPLITS = {"edit": "reliability", "rephrase": "generalization"}  # split -> metric name
SLACK = 4  # new tokens allowed past the longest target: room for EOS, punctuation, articles
Generations = list[Generation]


def answer(text: str) -> str:
    """The generated text up to its first newline after non-blank text."""
    return text.lstrip().split("\n", 1)[0]


def matches(text: str, target: str) -> bool:
    return normalize_answer(answer(text)) == normalize_answer(target)


def begins_with(text: str, target: str) -> bool:
    got, want = normalize_answer(answer(text)), normalize_answer(target)
    return got == want or got.startswith(want + " ")


def decode(
    generate: Callable, model: LoadedModel, probes: Probes, batch_size: int
) -> dict[str, Generations]:
    """Greedy answers of ``generate`` to the edit and rephrase probes."""
    out = {}
    for split in SPLITS:
        items = probes[split]
        longest = max(len(split_ids(model.tokenizer, p.prompt, p.target)[1]) for p in items)
        out[split] = generate_all(
            generate,
            model,
            [p.prompt for p in items],
            longest + SLACK,
            "\n",
            batch_size,
            desc=f"free decoding ({split})",
        )
    return out


def decoding_metrics(answers: dict[str, Generations], probes: Probes) -> dict[str, float]:
    """``reliability_gen``, ``generalization_gen`` and their ``_prefix`` readings."""
    result = {}
    for split, name in SPLITS.items():
        pairs = list(zip(answers[split], probes[split], strict=True))
        result[f"{name}_gen"] = M.mean([float(matches(g.text, p.target)) for g, p in pairs])
        result[f"{name}_gen_prefix"] = M.mean(
            [float(begins_with(g.text, p.target)) for g, p in pairs]
        )
    return result
