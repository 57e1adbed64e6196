"""Data a method trains on besides the stream: CounterFact cases that no evaluated input holds.

WISE's irrelevant prompts and T-Patcher's memory set come from here. The cases are those of a
flattened CounterFact file (``counterfact-train.json``) whose subject is no stream record's
subject and whose prompt is none of the stream's evaluated texts (edit, rephrase, locality
prompts). They are factual sentences, in none of the retention tasks' formats.
"""

from __future__ import annotations

import json
import random

from elder.data import data_file
from elder.editor import EditRecord


def outside_cases(path: str, records: list[EditRecord], seed: int) -> list[tuple[str, str]]:
    """(prompt, true answer) of every case of ``path`` outside the stream, shuffled by ``seed``."""
    texts = {t for r in records for t in (r.prompt, r.rephrase, r.loc_prompt)}
    subjects = {r.subject for r in records if r.subject}
    with open(data_file(path)) as f:
        cases = json.load(f)
    pool = [
        (c["prompt"], c["ground_truth"])
        for c in cases
        if c["prompt"] not in texts and c["subject"] not in subjects
    ]
    random.Random(seed).shuffle(pool)
    if not pool:
        raise ValueError(f"{path}: no case is left outside the stream")
    return pool
