"""Loaders of the 8 general tasks of Gu et al. 2024, one per task, as lists of plain records.

Files are data paths under ``tasks/`` (:mod:`elder.data`). Each loader returns JSON-able
dicts in file order; the counts are the README's.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import re
from pathlib import Path

from elder.data import data_file, data_folder
from elder.data.sources import FOLDERS

FILES = {
    "gsm8k": "tasks/test-reasoning.jsonl",
    "rte": "tasks/test-NLI.tsv",
    "nq": "tasks/test-OpenDomainQA.jsonl",
    "boolq": "tasks/test-ClosedDomainQA.jsonl",
    "mutual": "tasks/test-dialogue",  # a folder of dev_<i>.txt files
    "samsum": "tasks/test-summarization.json",
    "conll03": "tasks/test-NER.txt",
    "sst2": "tasks/test-SentimentAnalysis.tsv",
}
# Table 7's order. The ``*_gold`` variant shares its task's records.
TASKS = ("rte", "boolq", "sst2", "mutual", "conll03", "nq", "gsm8k", "samsum")


def _jsonl(file: Path) -> list[dict]:
    return [json.loads(line) for line in file.read_text(encoding="utf8").splitlines() if line]


def _tsv(file: Path) -> list[list[str]]:
    with open(file, newline="", encoding="utf8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:]  # header


def gsm8k(file: Path) -> list[dict]:
    """GSM8K test: question, gold rationale (before ``####``) and the final number."""
    out = []
    for r in _jsonl(file):
        rationale, _, answer = r["answer"].rpartition("####")
        out.append(
            {
                "question": r["question"],
                "rationale": rationale.strip(),
                "answer": answer.strip().replace(",", ""),
            }
        )
    return out


def rte(file: Path) -> list[dict]:
    """RTE: premise, hypothesis, label in {entailment, not_entailment}."""
    return [{"premise": s1, "hypothesis": s2, "label": label} for _, s1, s2, label in _tsv(file)]


def nq(file: Path) -> list[dict]:
    """NQ-open: question, reference answers, and the passage Gu et al. put in the prompt."""
    return [
        {"question": r["question"], "answers": r["answer"], "passage": r["output"][0].strip()}
        for r in _jsonl(file)
    ]


def boolq(file: Path) -> list[dict]:
    """BoolQ dev: question, passage, boolean answer."""
    return [
        {"question": r["question"], "passage": r["passage"], "answer": bool(r["answer"])}
        for r in _jsonl(file)
    ]


def mutual(folder: Path) -> list[dict]:
    """MuTual dev: dev_1..dev_886 in numeric order (Gu et al.'s), Python-literal dicts."""
    files = sorted(folder.glob("dev_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    out = []
    for f in files:
        r = ast.literal_eval(f.read_text(encoding="utf8"))  # literals only, never eval
        out.append(
            {
                "id": r["id"],
                "article": r["article"],
                "options": r["options"],
                "answer": r["answers"],
            }
        )
    return out


def samsum(file: Path) -> list[dict]:
    """SAMSum test: dialogue (CRLF turned into LF) and reference summary."""
    return [
        {"id": r["id"], "dialogue": r["dialogue"].replace("\r\n", "\n"), "summary": r["summary"]}
        for r in json.loads(file.read_text(encoding="utf8"))
    ]


def conll03(file: Path) -> list[dict]:
    """CoNLL-2003 validation: sentences as tokens + IOB tags; -DOCSTART- lines are dropped."""
    out, tokens, tags = [], [], []
    for line in file.read_text(encoding="utf8").splitlines() + [""]:
        parts = line.split()
        if parts and parts[0] != "-DOCSTART-":
            tokens.append(parts[0])
            tags.append(parts[-1])
        elif tokens:
            out.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
    return out


def sst2(file: Path) -> list[dict]:
    """SST-2 dev: sentence and label (1 = positive)."""
    return [{"sentence": s.strip(), "label": int(label)} for s, label in _tsv(file)]


LOADERS = {f.__name__: f for f in (gsm8k, rte, nq, boolq, mutual, samsum, conll03, sst2)}


def base_task(task: str) -> str:
    """The task whose records a variant uses: ``gsm8k_gold`` -> ``gsm8k``."""
    return re.sub(r"_gold$", "", task)


@functools.lru_cache(maxsize=16)
def load_task(task: str) -> list[dict]:
    """All records of a task (or of a variant's task), in file order; shared: do not mutate."""
    name = base_task(task)
    if name not in LOADERS:
        raise ValueError(f"unknown retention task '{task}'; known: {sorted(LOADERS)}")
    path = FILES[name]
    return LOADERS[name](data_folder(path) if path in FOLDERS else data_file(path))
