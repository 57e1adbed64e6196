"""MELO's balanced zsRE stream on a 7-record MEND-format fixture.

Records 0-6 of the fixture: answers Japan (3 rephrases), Japan (2, a duplicate), Paris (0),
Paris (1), Mozart (5), Nile (3), Japan (5, a duplicate). Kept facts: 0, 3, 4, 5; 8 edits.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.data import load_stream

FIXTURE = Path(__file__).parents[1] / "fixtures" / "zsre_mend_balanced.json"
RECORDS = json.loads(FIXTURE.read_text())
N_EDITS = 8  # all the fixture gives: 2 + 1 + 3 + 2


def _q(i: int) -> str:
    return RECORDS[i]["input"]


def _r(i: int, j: int) -> str:
    return RECORDS[i]["filtered_rephrases"][j]


@pytest.fixture
def nq(tmp_path) -> str:
    """An NQ file in MEND's format: parallel lists of questions and answers."""
    file = tmp_path / "nq.json"
    pairs = {"questions": [f"nq question {i}?" for i in range(5)]}
    file.write_text(json.dumps({**pairs, "answers": [f"nq answer {i}" for i in range(5)]}))
    return str(file)


def _read(nq: str, n: int = N_EDITS, zsre: Path = FIXTURE, **options):
    options = {"shuffle_seed": None, "n_locality": 3, **options}
    return load_stream("zsre_balanced", n, 4, [str(zsre), nq], **options)


def _write(tmp_path, records: list) -> Path:
    file = tmp_path / "zsre.json"
    file.write_text(json.dumps(records))
    return file


def test_edits_are_the_question_and_the_first_half_of_the_rephrases(nq):
    stream = _read(nq)
    expected = [_q(0), _r(0, 0), _q(3), _q(4), _r(4, 0), _r(4, 1), _q(5), _r(5, 0)]
    assert [r.prompt for r in stream.records] == expected


def test_every_edit_targets_the_true_answer(nq):
    records = _read(nq).records
    assert all(r.target == RECORDS[r.case_id]["output"][0]["answer"] for r in records)


def test_the_other_rephrases_are_held_out_for_generalization(nq):
    probes = _read(nq).held_out["rephrase"]
    expected = [_r(0, 1), _r(0, 2), _r(3, 0), _r(4, 2), _r(4, 3), _r(4, 4), _r(5, 1), _r(5, 2)]
    assert [p.prompt for p in probes] == expected
    assert all(p.target == RECORDS[p.case_id]["output"][0]["answer"] for p in probes)


def test_a_record_s_rephrase_is_its_first_held_out_one(nq):
    records = _read(nq).records
    assert {r.case_id: r.rephrase for r in records} == {
        0: _r(0, 1),
        3: _r(3, 0),
        4: _r(4, 2),
        5: _r(5, 1),
    }


def test_one_fact_per_answer_skipping_records_without_rephrases(nq):
    # 1 and 6 repeat Japan; 2 has no rephrase, so Paris goes to 3.
    assert sorted({r.case_id for r in _read(nq).records}) == [0, 3, 4, 5]


def test_phrasings_of_one_fact_share_its_label_and_facts_differ(nq):
    facts = {}
    for r in _read(nq).records:
        facts.setdefault(r.fact, set()).add(r.case_id)
    assert all(len(ids) == 1 for ids in facts.values())
    assert len(facts) == 4


def test_max_rephrases_caps_them_with_melo_s_slice(nq):
    # Record 4 has 5: capped at 4, it edits 2 and holds out [2:5], one past the cap.
    stream = _read(nq, max_rephrases=4)
    assert [r.prompt for r in stream.records if r.case_id == 4] == [_q(4), _r(4, 0), _r(4, 1)]
    held = [p.prompt for p in stream.held_out["rephrase"] if p.case_id == 4]
    assert held == [_r(4, 2), _r(4, 3), _r(4, 4)]


def test_n_edits_cuts_the_last_fact_and_keeps_its_held_out_rephrases(nq):
    stream = _read(nq, n=4)
    assert [r.prompt for r in stream.records] == [_q(0), _r(0, 0), _q(3), _q(4)]
    assert [p.case_id for p in stream.held_out["rephrase"]] == [0, 0, 3, 4, 4, 4]


def test_locality_is_the_first_nq_pairs_paired_with_facts_in_turn(nq):
    stream = _read(nq)
    assert [(p.prompt, p.target) for p in stream.held_out["locality"]] == [
        (f"nq question {i}?", f"nq answer {i}") for i in range(3)
    ]
    # Facts 0, 3, 4, 5 take pairs 0, 1, 2, then 0 again.
    loc = {r.case_id: r.loc_prompt for r in stream.records}
    assert loc == {
        0: "nq question 0?",
        3: "nq question 1?",
        4: "nq question 2?",
        5: "nq question 0?",
    }


def test_the_shuffle_is_melo_s_seeded_permutation(nq):
    in_order = _read(nq).records
    shuffled = _read(nq, shuffle_seed=42).records
    np.random.seed(42)  # MELO's dataset.py
    assert shuffled == [in_order[i] for i in np.random.choice(N_EDITS, N_EDITS, replace=False)]


def test_the_same_seed_gives_the_same_order_and_another_seed_another(nq):
    first, again, other = (_read(nq, shuffle_seed=s).records for s in (42, 42, 7))
    assert first == again
    assert first != other
    assert {r.prompt for r in first} == {r.prompt for r in other}


def test_no_seed_keeps_the_file_order(nq):
    assert [r.case_id for r in _read(nq).records] == [0, 0, 3, 4, 4, 4, 5, 5]


def test_json_lines_read_like_a_json_list(nq, tmp_path):
    jsonl = tmp_path / "zsre.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    assert _read(nq, zsre=jsonl).records == _read(nq).records


def test_more_edits_than_the_file_gives_is_refused(nq):
    with pytest.raises(ValueError, match=rf"n_edits=9 but .*{FIXTURE.name} gives only 8 edits"):
        _read(nq, n=9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"filtered_rephrases": "one rephrase"}, "record 3: field 'filtered_rephrases' must be"),
        ({"filtered_rephrases": ["ok", 7]}, "record 3: field 'filtered_rephrases' must be"),
        ({"input": " "}, "record 3: field 'input' is empty"),
        ({"output": []}, "record 3: field 'output' must be"),
        ({"output": [{"answer": None}]}, "record 3: field 'answer' is missing"),
    ],
)
def test_a_malformed_record_is_refused_naming_the_file(nq, tmp_path, change, message):
    records = [dict(r) for r in RECORDS]
    records[3].update(change)
    with pytest.raises(ValueError, match=rf"zsre\.json: {message}"):
        _read(nq, zsre=_write(tmp_path, records))


def test_a_single_path_is_refused(nq):
    with pytest.raises(ValueError, match="reads two files"):
        load_stream("zsre_balanced", 4, 4, str(FIXTURE))


def test_more_locality_probes_than_the_nq_file_has_is_refused(nq):
    with pytest.raises(ValueError, match=r"n_locality=6 but .*nq\.json has 5 questions"):
        _read(nq, n_locality=6)
