"""MELO's ``zsRE_balanced`` stream (github.com/ECNU-ICALK/MELO @ ed097eb, ``melo/dataset.py``
L107-177; locality: class ``NQ``, L37-54). It reads MEND's zsRE file (MELO's
``data/zsre_train.jsonl`` = ``structured_zeroshot-train-new_annotated_final.jsonl``) and NQ
file (``data/nq_train.json``), from MEND's/MELO's Google Drive; no such file is available here.

In file order, a record is kept if it has a rephrase and its answer ``output[0].answer`` (MELO's
label: it edits toward the true answer) is not a kept record's answer. With ``n`` = min(len,
16) rephrases, it gives edits of one fact, all ``-> answer``:

    edits      input, filtered_rephrases[: n // 2]
    held out   filtered_rephrases[n // 2 : n + 1]  (MELO's slice: past 16, one extra)
    locality   the first 1000 NQ questions -> answers (one file, not per fact)

Facts are taken until there are ``n_edits`` edits; the last fact is cut there (its held-out
rephrases stay). The edits, then the held-out probes, are permuted by
``RandomState(seed).permutation``: MELO's ``np.random.seed(42)`` + ``choice`` order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from elder.data import data_file
from elder.editor import EditRecord
from experiments.streams.files import field, read_json, strings
from experiments.streams.stream import Probe, Probes


def _records(file: Path) -> list:
    """A JSON list of records, or JSON lines (MEND's ``.jsonl``)."""
    text = file.read_text()
    if text.lstrip().startswith("["):
        return read_json(file)
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}: line {number} is not valid JSON: {err}") from None
    return records


def _fact(record: object, file: Path, index: int) -> tuple[str, str, list[str]]:
    """A record's question, answer and rephrases."""
    question = field(record, "input", file, index)  # also checks that it is an object
    output = record.get("output")
    if not (isinstance(output, list) and output and isinstance(output[0], dict)):
        raise ValueError(
            f"{file}: record {index}: field 'output' must be a non-empty list of "
            f"{{'answer': ...}} objects, got {output!r:.80}"
        )
    answer = field(output[0], "answer", file, index)
    where = f"{file}: record {index}: field 'filtered_rephrases'"
    return question, answer, strings(record.get("filtered_rephrases"), where)


def _locality(file: Path, n_locality: int) -> list[Probe]:
    """The first ``n_locality`` NQ pairs of ``{"questions": [...], "answers": [...]}``."""
    nq = read_json(file, dict, "an object with 'questions' and 'answers' lists")
    questions, answers = (
        strings(nq.get(k), f"{file}: field '{k}'") for k in ("questions", "answers")
    )
    if len(questions) != len(answers):
        raise ValueError(f"{file}: {len(questions)} questions but {len(answers)} answers")
    if not 1 <= n_locality <= len(questions):
        raise ValueError(f"n_locality={n_locality} but {file} has {len(questions)} questions")
    pairs = zip(questions[:n_locality], answers[:n_locality], strict=True)
    return [Probe(q, a) for q, a in pairs]


def zsre_balanced(
    paths: tuple[str, ...],
    n_edits: int,
    shuffle_seed: int | None = 42,
    max_rephrases: int = 16,
    n_locality: int = 1000,
) -> tuple[list[EditRecord], Probes]:
    """``n_edits`` edits of MELO's balanced zsRE stream: paths = (zsRE file, NQ file)."""
    if len(paths) != 2:
        raise ValueError(f"zsre_balanced reads two files (zsRE, NQ), got {list(paths)}")
    if n_edits < 1 or max_rephrases < 1:
        raise ValueError(f"n_edits and max_rephrases must be >= 1, got {n_edits}, {max_rephrases}")
    file, nq_file = (data_file(p) for p in paths)
    locality = _locality(nq_file, n_locality)
    edits: list[EditRecord] = []
    held_out: list[Probe] = []
    answers: set[str] = set()
    for index, record in enumerate(_records(file)):
        if len(edits) >= n_edits:
            break
        question, answer, rephrases = _fact(record, file, index)
        n = min(len(rephrases), max_rephrases)
        if n == 0 or answer in answers:
            continue  # MELO: no rephrase to hold out, or the answer already has its fact
        loc = locality[len(answers) % len(locality)]
        answers.add(answer)
        outer = rephrases[n // 2 : n + 1]
        edits += [
            EditRecord(
                prompt=prompt,
                target=answer,
                rephrase=outer[0],
                loc_prompt=loc.prompt,
                loc_target=loc.target,
                case_id=index,
                fact=f"zsre_balanced:{index}",
            )
            for prompt in [question, *rephrases[: n // 2]]
        ]
        held_out += [Probe(r, answer, index) for r in outer]
    if len(edits) < n_edits:
        raise ValueError(
            f"n_edits={n_edits} but {file} gives only {len(edits)} edits "
            f"({len(answers)} facts with distinct answers and a rephrase)"
        )
    edits = edits[:n_edits]
    if shuffle_seed is not None:
        rng = np.random.RandomState(shuffle_seed)
        edits = [edits[i] for i in rng.permutation(len(edits))]
        held_out = [held_out[i] for i in rng.permutation(len(held_out))]
    return edits, {"rephrase": held_out, "locality": locality}
