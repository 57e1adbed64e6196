"""data=counterfact_paper: which phrasings of a case are edited, held out, and share a label."""

import json
from pathlib import Path

import pytest

from experiments.data import load_stream

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "counterfact_paper.json"
CASES = json.loads(FIXTURE.read_text())


def _stream(n_edits=8, path=FIXTURE, **options):
    return load_stream("counterfact_paper", n_edits, 4, str(path), shuffle_seed=None, **options)


def test_each_case_edits_its_requested_prompt_and_first_paraphrase_towards_the_new_target():
    records = _stream().records
    case = CASES[0]
    rewrite = case["requested_rewrite"]
    assert [r.prompt for r in records[:2]] == [
        rewrite["prompt"].format(rewrite["subject"]),
        case["paraphrase_prompts"][0],
    ]
    assert {r.target for r in records[:2]} == {rewrite["target_new"]["str"]}


def test_the_two_edits_of_a_case_share_one_fact_label_and_cases_differ():
    records = _stream().records
    assert records[0].fact_label == records[1].fact_label
    assert len({r.fact_label for r in records}) == len(records) // 2


def test_the_second_paraphrase_is_held_out_for_generalization():
    probes = _stream().probes()["rephrase"]
    assert [p.prompt for p in probes] == [c["paraphrase_prompts"][1] for c in CASES]
    assert [p.target for p in probes] == [
        c["requested_rewrite"]["target_new"]["str"] for c in CASES
    ]
    edited = {r.prompt for r in _stream().records}
    assert not edited & {p.prompt for p in probes}


def test_every_neighborhood_prompt_probes_locality_with_the_truth_and_the_new_target():
    probes = _stream(n_edits=2).probes()["locality"]
    rewrite = CASES[0]["requested_rewrite"]
    assert [p.prompt for p in probes] == CASES[0]["neighborhood_prompts"]
    assert {p.target for p in probes} == {rewrite["target_true"]["str"]}
    assert {p.alt for p in probes} == {rewrite["target_new"]["str"]}


def test_the_case_shuffle_is_seeded_and_null_keeps_the_file_order():
    def order(seed):
        stream = load_stream("counterfact_paper", 8, 4, str(FIXTURE), shuffle_seed=seed)
        return [r.case_id for r in stream.records[::2]]

    assert order(None) == [c["case_id"] for c in CASES]
    assert order(1) == order(1)
    assert sorted(order(1)) == sorted(order(None))
    assert {tuple(order(s)) for s in range(6)} != {tuple(order(None))}


@pytest.mark.parametrize("n_edits", [3, 0])
def test_an_edit_count_that_is_not_whole_cases_is_refused(n_edits):
    with pytest.raises(ValueError, match="multiple of 2"):
        _stream(n_edits=n_edits)


def test_more_edits_than_the_file_has_cases_for_is_refused():
    with pytest.raises(ValueError, match="needs 5 cases .* has only 4"):
        _stream(n_edits=10)


def test_a_case_with_one_paraphrase_is_refused_naming_the_file_and_record(tmp_path):
    broken = [dict(CASES[0], paraphrase_prompts=["only one"])]
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"cf.json: record 0: field 'paraphrase_prompts'"):
        _stream(n_edits=2, path=path)
