"""Every prompt of the retention benchmark, in one place, and the version that keys the cache.

Zero-shot, greedy, in the manner of Gu et al. 2024 ("Model editing can hurt general abilities
of large language models", their ``test-task-code/*.py``): their wording is kept verbatim
(typos included) except where noted. Changing any template, ``max_new_tokens`` or ``stop``
below changes what the models generate: bump ``PROMPT_VERSION`` so cached outputs of the
unedited model are recomputed.

Per task (record fields from :mod:`experiments.retention.tasks`):

- ``gsm8k``: ``Q: {question}\\nA: Let's think step by step.`` -- zero-shot chain of thought
  (Kojima et al.). Gu et al.'s prompt carries the gold rationale, so it only tests copying
  the final number; it is kept as the separate task ``gsm8k_gold`` (not in the mean).
  Generation stops at a blank line (``\\n\\n``): the rationale spans lines, answers end in one.
- ``gsm8k_gold``: Gu et al.'s ``Q: {question} A:Let's think step by step. {rationale}
  Therefore, the answer (arabic numerals) is:``, 5 new tokens as theirs.
- ``rte``: ``{premise} entails the {hypothesis}. True or False? answer:`` (Gu et al.).
- ``nq``: Gu et al.'s ``Refer to the passage below and answer the following question.
  Passage: {passage} Question: {question}`` plus ``\\nAnswer:`` (deviation: their prompt
  ends at the question and their parser splits on an ``Answer:`` the model may or may not
  write; the suffix makes the answer's start well defined).
- ``boolq``: ``Please answer the given question based on the passage. The answer should be
  exact 'yes' or 'no'. passage: {passage} question: {question}. answer:`` (Gu et al.).
- ``mutual``: ``Q: {article} Which choice is correct? Answer Chioces: (A){o0}(B){o1}(C){o2}
  (D){o3} A: Among A through D, the answer is`` (Gu et al., typo kept).
- ``samsum``: ``{dialogue}\\nTL;DR:`` (Gu et al.; their 25 new tokens -> 40, cut at newline).
- ``conll03``: one prompt per sentence and entity type, ``Please identify {type} Entity from
  the given text. Text: {sentence} Entity:`` with type in Person, Location, Organization,
  Miscellaneous (Gu et al.); the sentence is the tokens joined by spaces, with ``,`` and ``.``
  attached to the previous token as Gu et al. do.
- ``sst2``: ``For each snippet of text,label the sentiment of the text as positive or
  negative.The answer should be exact 'positive' or 'negative'. text: {sentence} answer:``.

Stopping: every task except ``gsm8k`` stops at the first newline (its answer is one line) that
follows non-blank text; line breaks before the answer are skipped, as SmolLM2 opens most NQ
answers with one (``gu2024-v1`` stopped there and scored those answers as empty). The decoded
output is cut before the stop string. Outputs are then stripped of surrounding
whitespace. Prompts longer than the model's context minus ``max_new_tokens`` are cut from the
left (never the case for SmolLM2/GPT2-XL/LLaMA2 with these data; tiny test models only).
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_VERSION = "gu2024-v2"

ENTITY_TYPES = {"PER": "Person", "LOC": "Location", "ORG": "Organization", "MISC": "Miscellaneous"}


@dataclass(frozen=True)
class TaskSpec:
    """How one task is prompted and how much each prompt may generate."""

    template: str  # str.format over the record's fields (+ o0..o3, entity_type, sentence)
    max_new_tokens: int
    stop: str | None = "\n"  # a row ends at this string once it has non-blank text


SPECS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec("Q: {question}\nA: Let's think step by step.", 128, "\n\n"),
    "gsm8k_gold": TaskSpec(
        "Q: {question} A:Let's think step by step. {rationale} "
        "Therefore, the answer (arabic numerals) is:",
        5,
    ),
    "rte": TaskSpec("{premise} entails the {hypothesis}. True or False? answer:", 2),
    "nq": TaskSpec(
        "Refer to the passage below and answer the following question. "
        "Passage: {passage} Question: {question}\nAnswer:",
        16,
    ),
    "boolq": TaskSpec(
        "Please answer the given question based on the passage. The answer should be exact "
        "'yes' or 'no'. passage: {passage} question: {question}. answer:",
        2,
    ),
    "mutual": TaskSpec(
        "Q: {article} Which choice is correct? Answer Chioces: (A){o0}(B){o1}(C){o2}(D){o3} "
        "A: Among A through D, the answer is",
        2,
    ),
    "samsum": TaskSpec("{dialogue}\nTL;DR:", 40),
    "conll03": TaskSpec(
        "Please identify {entity_type} Entity from the given text. Text: {sentence} Entity:", 12
    ),
    "sst2": TaskSpec(
        "For each snippet of text,label the sentiment of the text as positive or negative."
        "The answer should be exact 'positive' or 'negative'. text: {sentence} answer:",
        2,
    ),
}


@dataclass(frozen=True)
class Prompt:
    """One generation: the record it belongs to, its text, and (NER) the entity type asked."""

    record: int  # index into the task's sampled records
    text: str
    kind: str = ""  # conll03: PER / LOC / ORG / MISC


def join_tokens(tokens: list[str]) -> str:
    """Gu et al.'s detokenisation: spaces between tokens, ',' and '.' glued to the left."""
    out = ""
    for tok in tokens:
        out += tok if tok in {",", "."} else " " + tok
    return out.strip()


def render(task: str, records: list[dict]) -> list[Prompt]:
    """The prompts of a task's records (conll03: four per sentence, one per entity type)."""
    spec = SPECS[task]
    prompts = []
    for i, r in enumerate(records):
        if task == "conll03":
            sentence = join_tokens(r["tokens"])
            for kind, name in ENTITY_TYPES.items():
                text = spec.template.format(entity_type=name, sentence=sentence)
                prompts.append(Prompt(i, text, kind))
        elif task == "mutual":
            options = {f"o{j}": o for j, o in enumerate(r["options"])}
            prompts.append(Prompt(i, spec.template.format(**r, **options)))
        else:
            prompts.append(Prompt(i, spec.template.format(**r)))
    return prompts


def clean(task: str, text: str) -> str:
    """A decoded generation cut at the task's stop string and stripped."""
    stop = SPECS[task].stop
    text = text.lstrip()  # generation skips line breaks before the answer
    if stop is not None:
        text = text.split(stop, 1)[0]
    return text.strip()
