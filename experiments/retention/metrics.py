"""Task metrics of the retention benchmark, as the ELDER paper's appendix names them.

Each scorer takes the task's records, its prompts and the cleaned outputs (one per prompt)
and returns ``{task: score, ...}`` in [0, 1]: the task's own name is the score in the mean,
other keys are separately named variants (Gu et al.'s scoring rules). Answer parsing:

- ``gsm8k`` (solve rate): the last number in the output (commas dropped) equals the gold
  number. ``gsm8k_gold`` (Gu et al.): the gold number is a substring of the output.
- ``rte`` (two-way accuracy): "true" in the lowercased output -> entailment, else "false" ->
  not_entailment; neither counts as wrong (Gu et al.'s "total accuracy").
- ``nq`` (accuracy vs reference): SQuAD-normalised exact match of the output against any
  reference answer. ``nq_contains`` (Gu et al.): some contiguous span of the normalised
  output's words equals a normalised reference.
- ``boolq`` (exact match): the output's first word, lowercased and stripped of punctuation,
  is "yes" / "no" and equals the gold answer.
- ``mutual`` (best of four): the first standalone letter A-D of the output is the answer.
- ``samsum``: mean over examples of (ROUGE-1 F + ROUGE-2 F + ROUGE-L F) / 3, ``rouge-score``
  with its default tokenizer and no stemming (Gu et al.'s ``rouge`` package does not stem);
  an empty output scores 0.
- ``conll03`` (entity-level F1, ``seqeval``): the output for type T is split on ``,`` / ``;``
  and each piece's words (a final ``.``/``,`` glued to the last word may be dropped) are
  tagged B-T/I-T wherever they occur as a token span of the sentence (the first type to
  claim a token wins, in PER, LOC, ORG, MISC order); micro F1 over all sentences.
  ``conll03_recall`` (Gu et al.): per type, the share of gold entities that are
  substrings of the output (a sentence with no gold entity counts 1/1 if the output is empty,
  0/1 otherwise), averaged over the four types. Gold spans come from seqeval's chunker
  (Gu et al. extend a span to the next ``O`` tag, merging adjacent entities).
- ``sst2`` (accuracy): "positive" in the lowercased output -> 1, else "negative" -> 0,
  neither is wrong.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from rouge_score import rouge_scorer
from seqeval.metrics import f1_score
from seqeval.metrics.sequence_labeling import get_entities

from experiments.metrics import mean
from experiments.retention.prompts import ENTITY_TYPES, Prompt

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number written in a text, without thousands separators or a trailing '.0'."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "")
    return number[:-2] if number.endswith(".0") else number


def gsm8k(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Solve rate: the last number of the output is the gold answer."""
    hits = [
        last_number(o) == records[p.record]["answer"] for p, o in zip(prompts, outputs, strict=True)
    ]
    return {"gsm8k": mean([float(h) for h in hits])}


def gsm8k_gold(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Gu et al.'s rule: the gold number appears in the output."""
    hits = [records[p.record]["answer"] in o for p, o in zip(prompts, outputs, strict=True)]
    return {"gsm8k_gold": mean([float(h) for h in hits])}


def rte(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Two-way accuracy on true/false answers."""
    hits = []
    for p, o in zip(prompts, outputs, strict=True):
        o = o.lower()
        pred = "entailment" if "true" in o else "not_entailment" if "false" in o else None
        hits.append(float(pred == records[p.record]["label"]))
    return {"rte": mean(hits)}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _contains_span(output: str, answers: list[str]) -> bool:
    words = output.split()
    spans = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
    return any(a in spans for a in answers)


def nq(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Normalised exact match against any reference; Gu et al.'s span match as a variant."""
    exact, contains = [], []
    for p, o in zip(prompts, outputs, strict=True):
        answers = [normalize_answer(a) for a in records[p.record]["answers"]]
        out = normalize_answer(o)
        exact.append(float(out in answers))
        contains.append(float(_contains_span(out, answers)))
    return {"nq": mean(exact), "nq_contains": mean(contains)}


def boolq(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Exact match of a yes/no first word with the gold answer."""
    hits = []
    for p, o in zip(prompts, outputs, strict=True):
        words = o.lower().split()
        first = words[0].strip(string.punctuation) if words else ""
        gold = "yes" if records[p.record]["answer"] else "no"
        hits.append(float(first == gold))
    return {"boolq": mean(hits)}


_CHOICE = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")


def mutual(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Best of four: the first standalone letter A-D is the chosen option."""
    hits = []
    for p, o in zip(prompts, outputs, strict=True):
        m = _CHOICE.search(o)
        hits.append(float(m is not None and m.group(1) == records[p.record]["answer"]))
    return {"mutual": mean(hits)}


_ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


def rouge_mean(prediction: str, reference: str) -> float:
    """(ROUGE-1 F + ROUGE-2 F + ROUGE-L F) / 3 of one prediction; 0 when it is empty."""
    if not prediction.strip():
        return 0.0
    scores = _ROUGE.score(reference, prediction)  # rouge-score takes (target, prediction)
    return sum(s.fmeasure for s in scores.values()) / 3


def samsum(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Mean of ROUGE-1/2/L F-measures over the examples."""
    scores = [
        rouge_mean(o, records[p.record]["summary"]) for p, o in zip(prompts, outputs, strict=True)
    ]
    return {"samsum": mean(scores)}


def entities_to_tags(tokens: list[str], predicted: dict[str, list[str]]) -> list[str]:
    """IOB2 tags of a sentence from predicted entity strings per type (first claim wins)."""
    tags = ["O"] * len(tokens)
    for kind in ENTITY_TYPES:
        for entity in predicted.get(kind, []):
            words = entity.split()
            if words and words[-1][-1] in ".," and len(words[-1]) > 1:
                # "Smith." from a glued sentence end; "U.S." is a token and matches as is
                variants = [words, words[:-1] + [words[-1][:-1]]]
            else:
                variants = [words]
            for start in range(len(tokens)):
                for w in variants:
                    span = range(start, start + len(w))
                    if w and tokens[start : start + len(w)] == w and _free(tags, span):
                        tags[start] = f"B-{kind}"
                        for i in span[1:]:
                            tags[i] = f"I-{kind}"
                        break
    return tags


def _free(tags: list[str], span: range) -> bool:
    return all(tags[i] == "O" for i in span)


def split_entities(output: str) -> list[str]:
    """Entity strings of one NER output: pieces between commas / semicolons, stripped."""
    return [piece.strip() for piece in re.split(r"[,;]", output) if piece.strip()]


def conll03(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Entity-level micro F1 (seqeval) and Gu et al.'s substring recall."""
    per_sentence: dict[int, dict[str, str]] = {}
    for p, o in zip(prompts, outputs, strict=True):
        per_sentence.setdefault(p.record, {})[p.kind] = o
    y_true, y_pred = [], []
    found = {kind: 0 for kind in ENTITY_TYPES}
    total = {kind: 0 for kind in ENTITY_TYPES}
    for i, answers in sorted(per_sentence.items()):
        r = records[i]
        y_true.append(r["tags"])
        y_pred.append(
            entities_to_tags(r["tokens"], {k: split_entities(o) for k, o in answers.items()})
        )
        gold = get_entities(r["tags"])  # [(type, start, end inclusive)]
        for kind, output in answers.items():
            spans = [" ".join(r["tokens"][s : e + 1]) for t, s, e in gold if t == kind]
            if spans:
                found[kind] += sum(s in output for s in spans)
                total[kind] += len(spans)
            else:
                found[kind] += int(not output)
                total[kind] += 1
    recall = mean([found[k] / total[k] for k in ENTITY_TYPES if total[k]])
    return {"conll03": float(f1_score(y_true, y_pred)), "conll03_recall": recall}


def sst2(records: list[dict], prompts: list[Prompt], outputs: list[str]) -> dict[str, float]:
    """Two-way accuracy on positive/negative answers."""
    hits = []
    for p, o in zip(prompts, outputs, strict=True):
        o = o.lower()
        pred = 1 if "positive" in o else 0 if "negative" in o else None
        hits.append(float(pred == records[p.record]["label"]))
    return {"sst2": mean(hits)}


Scorer = Callable[[list[dict], list[Prompt], list[str]], dict[str, float]]
SCORERS: dict[str, Scorer] = {
    f.__name__: f for f in (gsm8k, gsm8k_gold, rte, nq, boolq, mutual, samsum, conll03, sst2)
}
