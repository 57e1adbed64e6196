"""CounterFact in ROME's original format, under the ELDER paper's protocol.

The ELDER appendix splits "the edits and their rephrasings into two groups"; MELO's scripts,
which the ELDER authors name as theirs, edit a case's requested prompt and its first
paraphrase under one label and hold the second paraphrase out. Each case of
``counterfact_portability_gpt4.json`` thus gives two edits of one fact:

    edits      requested prompt (subject filled in) -> target_new
               paraphrase_prompts[0]                -> target_new
    held out   paraphrase_prompts[1]                -> target_new     (generalization)
               neighborhood_prompts (10)            -> target_true    (locality)

The neighborhood probes carry ``alt = target_new``: CounterFact's neighborhood score asks
whether the edited model still prefers the truth over the new target there.
"""

from __future__ import annotations

import random
from pathlib import Path

from elder.data import data_file
from elder.editor import EditRecord
from experiments.streams.files import case_id, field, read_json, strings
from experiments.streams.stream import Probe, Probes

EDITS_PER_CASE = 2  # the requested prompt and the first paraphrase


def _case(case: dict, file: Path, index: int) -> tuple[list[EditRecord], Probes]:
    """The two edits of one case and its held-out probes."""
    if not isinstance(case, dict) or not isinstance(case.get("requested_rewrite"), dict):
        raise ValueError(f"{file}: record {index}: no 'requested_rewrite' object")
    rewrite = case["requested_rewrite"]
    subject = field(rewrite, "subject", file, index)
    template = field(rewrite, "prompt", file, index)
    if "{}" not in template:
        raise ValueError(f"{file}: record {index}: requested prompt {template!r} has no '{{}}'")
    new, true = (
        {} if not isinstance(rewrite.get(k), dict) else rewrite[k]
        for k in ("target_new", "target_true")
    )
    target_new = field(new, "str", file, index)
    target_true = field(true, "str", file, index)
    where = f"{file}: record {index}: field"
    paraphrases = strings(case.get("paraphrase_prompts"), f"{where} 'paraphrase_prompts'", 2)
    neighbours = strings(case.get("neighborhood_prompts"), f"{where} 'neighborhood_prompts'", 1)
    cid = case_id(case, file, index)
    edits = [
        EditRecord(
            prompt=prompt,
            target=target_new,
            rephrase=paraphrases[1],
            loc_prompt=neighbours[0],
            loc_target=target_true,
            subject=subject,
            case_id=cid,
            fact=f"counterfact:{cid}",
        )
        for prompt in (template.format(subject), paraphrases[0])
    ]
    probes = {
        "rephrase": [Probe(paraphrases[1], target_new, cid)],
        "locality": [Probe(p, target_true, cid, alt=target_new) for p in neighbours],
    }
    return edits, probes


def counterfact_paper(
    paths: tuple[str, ...], n_edits: int, shuffle_seed: int | None = 42
) -> tuple[list[EditRecord], Probes]:
    """``n_edits`` edits (``n_edits / 2`` cases), the cases shuffled with ``shuffle_seed``
    (MELO's loader shuffles with seed 42; ``None`` keeps the file's order)."""
    (path,) = paths
    file = data_file(path)
    if n_edits < EDITS_PER_CASE or n_edits % EDITS_PER_CASE:
        raise ValueError(
            f"counterfact_paper: n_edits must be a positive multiple of {EDITS_PER_CASE} "
            f"(each case gives {EDITS_PER_CASE} edits), got {n_edits}"
        )
    cases = list(enumerate(read_json(file)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(cases)
    n_cases = n_edits // EDITS_PER_CASE
    if n_cases > len(cases):
        raise ValueError(
            f"n_edits={n_edits} needs {n_cases} cases but {file} has only {len(cases)}"
        )
    records: list[EditRecord] = []
    held_out: Probes = {"rephrase": [], "locality": []}
    for index, case in cases[:n_cases]:
        edits, probes = _case(case, file, index)
        records += edits
        for split, items in probes.items():
            held_out[split] += items
    return records, held_out
