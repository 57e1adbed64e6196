"""Data a method trains on besides the stream: CounterFact cases that no evaluated input holds.

WISE's irrelevant prompts, T-Patcher's memory set and SERAC's training cases come from here.
The cases are those of a flattened CounterFact file (``counterfact-train.json``) whose subject
is no stream record's subject and whose prompt (SERAC: each of its texts) is none of the
stream's evaluated texts (edit, rephrase, locality prompts). They are factual sentences, in
none of the retention tasks' formats.
"""

from __future__ import annotations

import json
import random

from elder.data import data_file
from elder.editor import EditRecord


def outside_records(
    path: str, records: list[EditRecord], seed: int, fields: tuple[str, ...] = ("prompt",)
) -> list[dict]:
    """Every case of ``path`` whose subject and ``fields`` the stream does not hold, shuffled."""
    texts = {t for r in records for t in (r.prompt, r.rephrase, r.loc_prompt)}
    subjects = {r.subject for r in records if r.subject}
    with open(data_file(path)) as f:
        cases = json.load(f)
    pool = [
        c for c in cases if c["subject"] not in subjects and all(c[k] not in texts for k in fields)
    ]
    random.Random(seed).shuffle(pool)
    if not pool:
        raise ValueError(f"{path}: no case is left outside the stream")
    return pool


def outside_cases(path: str, records: list[EditRecord], seed: int) -> list[tuple[str, str]]:
    """(prompt, true answer) of every case of ``path`` outside the stream, shuffled by ``seed``."""
    return [(c["prompt"], c["ground_truth"]) for c in outside_records(path, records, seed)]
