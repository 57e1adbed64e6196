"""Synthetic data files in every format the project reads, written by the tests themselves.

Where ``$ELDER_DATA_DIR`` is not set (a fresh clone, no ``../shared``), the test suite runs on
these: a few made-up records per file, at the same paths as the real files, so that every
reader, stream and retention task runs end to end. Tests that need the real files' contents
(their counts, a known record) are marked ``real_data`` and skip here.
"""

from __future__ import annotations

import json
from pathlib import Path

N_ZSRE = 64
N_COUNTERFACT = 48  # one in eight without a rephrase, as the reader must skip such cases
N_TASK = 6
N_NQ = 24  # the allocation-code figure takes 20 NQ inputs
N_NQ_LOCALITY = 1000  # zsre_balanced's default n_locality


def _country(i: int) -> str:
    return ["France", "Japan", "Brazil", "Kenya", "Norway", "Chile", "India", "Egypt"][i % 8]


def _zsre() -> list[dict]:
    return [
        {
            "subject": f"Marlow {i}",
            "src": f"What country is Marlow {i} in?",
            "pred": _country(i),
            "rephrase": f"Marlow {i} is located in which country?",
            "alt": _country(i + 3),
            "answers": [_country(i)],
            "loc": f"nq question: who wrote chapter {i} of the old book",
            "loc_ans": f"Author {i}",
            "cond": "",
        }
        for i in range(N_ZSRE)
    ]


def _counterfact_flat(ids: range) -> list[dict]:
    return [
        {
            "case_id": i,
            "prompt": f"The mother tongue of Ana Vell {i} is",
            "subject": f"Ana Vell {i}",
            "target_new": ["English", "French", "Dutch", "Polish"][i % 4],
            "ground_truth": ["Greek", "Finnish", "Czech", "Welsh"][i % 4],
            "rephrase_prompt": "" if i % 8 == 7 else f"Ana Vell {i} speaks the language",
            "locality_prompt": f"The mother tongue of Ruud Kol {i} is",
            "locality_ground_truth": "Dutch",
        }
        for i in ids
    ]


def _counterfact_original() -> list[dict]:
    return [
        {
            "case_id": 100 + i,
            "pararel_idx": i,
            "requested_rewrite": {
                "prompt": "{} is a citizen of",
                "relation_id": "P27",
                "subject": f"Tomas Ilk {i}",
                "target_new": {"str": _country(i + 1), "id": "Q1"},
                "target_true": {"str": _country(i), "id": "Q2"},
            },
            "paraphrase_prompts": [
                f"Some words. Tomas Ilk {i} holds a passport of",
                f"More words. Tomas Ilk {i} is a national of",
            ],
            "neighborhood_prompts": [f"Neighbour {i}-{j} is a citizen of" for j in range(10)],
            "attribute_prompts": [f"Other {i} is a citizen of"],
            "generation_prompts": [f"Tomas Ilk {i} was born in"],
        }
        for i in range(24)
    ]


def _mend_zsre() -> str:
    lines = []
    for i in range(40):
        record = {
            "input": f"Which river flows through Osk {i}?",
            "output": [{"answer": f"River {i % 30}"}],  # some answers repeat: one fact each
            "filtered_rephrases": [f"Osk {i} lies on which river? ({j})" for j in range(i % 5)],
        }
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def _nq() -> dict:
    questions = [f"who painted picture number {i}" for i in range(N_NQ_LOCALITY)]
    return {"questions": questions, "answers": [f"Painter {i}" for i in range(N_NQ_LOCALITY)]}


def _tasks(root: Path) -> None:
    gsm8k = [
        {
            "question": f"Ann has {i} apples and buys 2. How many now?",
            "answer": f"{i}+2 #### {i + 2}",
        }
        for i in range(N_TASK)
    ]
    _jsonl(root / "test-reasoning.jsonl", gsm8k)
    rte = ["index\tsentence1\tsentence2\tlabel"] + [
        f"{i}\tA cat {i} sleeps on the mat.\tA cat {i} sleeps.\t"
        + ("entailment" if i % 2 else "not_entailment")
        for i in range(N_TASK)
    ]
    (root / "test-NLI.tsv").write_text("\n".join(rte) + "\n")
    nq = [
        {"question": f"who built tower {i}", "answer": [f"Builder {i}"], "output": [f"Builder {i}"]}
        for i in range(N_NQ)
    ]
    _jsonl(root / "test-OpenDomainQA.jsonl", nq)
    boolq = [
        {
            "question": f"is tower {i} taller than tower {i + 1}",
            "title": f"Tower {i}",
            "answer": i % 2 == 0,
            "passage": f"Tower {i} is a tall building made of stone, built in the year {1900 + i}.",
        }
        for i in range(N_TASK)
    ]
    _jsonl(root / "test-ClosedDomainQA.jsonl", boolq)
    samsum = [
        {
            "id": f"s{i}",
            "summary": f"Bo asks Al about plan {i}.",
            "dialogue": f"Bo: Plan {i}?\r\nAl: Yes.",
        }
        for i in range(N_TASK)
    ]
    (root / "test-summarization.json").write_text(json.dumps(samsum))
    ner = ["-DOCSTART- -X- -X- O", ""]
    for i in range(N_TASK):
        ner += [
            "Anna NNP B-NP B-PER",
            "visited VBD B-VP O",
            f"Oslo{i} NNP B-NP B-LOC",
            ". . O O",
            "",
        ]
    (root / "test-NER.txt").write_text("\n".join(ner) + "\n")
    sst = ["sentence\tlabel"] + [
        f"a {'fine' if i % 2 else 'dull'} film number {i} \t{i % 2}" for i in range(N_TASK)
    ]
    (root / "test-SentimentAnalysis.tsv").write_text("\n".join(sst) + "\n")
    dialogue = root / "test-dialogue"
    dialogue.mkdir()
    for i in range(1, N_TASK + 1):
        record = {
            "answers": "ABCD"[i % 4],
            "options": [f"m : option {k} for talk {i} ." for k in "ABCD"],
            "article": f"f : shall we meet at {i} ? m : yes , at {i} .",
            "id": f"dev_{i}",
        }
        (dialogue / f"dev_{i}.txt").write_text(repr(record))


def _jsonl(file: Path, rows: list[dict]) -> None:
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write(root: Path) -> Path:
    """Every data file under ``root``, at the real files' relative paths; returns ``root``."""
    (root / "zsre").mkdir(parents=True)
    (root / "counterfact").mkdir()
    (root / "tasks").mkdir()
    (root / "zsre" / "zsre_mend_eval_portability_gpt4.json").write_text(json.dumps(_zsre()))
    (root / "zsre" / "zsre_train.jsonl").write_text(_mend_zsre())
    (root / "zsre" / "nq_train.json").write_text(json.dumps(_nq()))
    thirds = {"edit": range(0, 16), "train": range(16, 32), "val": range(32, N_COUNTERFACT)}
    for name, ids in thirds.items():
        (root / "counterfact" / f"counterfact-{name}.json").write_text(
            json.dumps(_counterfact_flat(ids))
        )
    (root / "counterfact" / "counterfact_portability_gpt4.json").write_text(
        json.dumps(_counterfact_original())
    )
    _tasks(root / "tasks")
    return root
