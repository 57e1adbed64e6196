"""The edit streams: CounterFact's merge order and rephrase rule, zsRE's fields, batching."""

import json

import pytest

from experiments.data import load_stream
from tests.conftest import real_data


def _case(case_id: int, rephrase: str | None = "Where is {} located?") -> dict:
    case = {
        "case_id": case_id,
        "prompt": f"prompt {case_id}",
        "target_new": f"new {case_id}",
        "subject": f"subject {case_id}",
        "locality_prompt": f"loc {case_id}",
        "locality_ground_truth": f"truth {case_id}",
    }
    if rephrase is not None:
        case["rephrase_prompt"] = f"rephrase {case_id}"
    return case


@pytest.fixture
def counterfact_trio(tmp_path):
    """Three files whose case_ids interleave; case 2 has no rephrase, case 4 an empty one."""
    files = {
        "edit.json": [_case(5), _case(0)],
        "train.json": [_case(3), _case(2, rephrase=None)],
        "val.json": [_case(1), {**_case(4), "rephrase_prompt": "  "}, _case(6)],
    }
    for name, cases in files.items():
        (tmp_path / name).write_text(json.dumps(cases))
    return [str(tmp_path / name) for name in files]


def test_counterfact_merges_the_files_in_case_id_order(counterfact_trio):
    stream = load_stream("counterfact", 5, 4, counterfact_trio)
    assert [r.case_id for r in stream.records] == [0, 1, 3, 5, 6]


def test_counterfact_keeps_only_cases_with_a_rephrase(counterfact_trio):
    stream = load_stream("counterfact", 5, 4, counterfact_trio)
    assert 2 not in [r.case_id for r in stream.records]
    assert 4 not in [r.case_id for r in stream.records]


def test_counterfact_fields_map_to_edit_rephrase_and_locality(counterfact_trio):
    record = load_stream("counterfact", 1, 4, counterfact_trio).records[0]
    assert (record.prompt, record.target) == ("prompt 0", "new 0")
    assert record.rephrase == "rephrase 0"
    assert (record.loc_prompt, record.loc_target) == ("loc 0", "truth 0")
    assert record.subject == "subject 0"


def test_more_edits_than_usable_cases_is_refused(counterfact_trio):
    with pytest.raises(ValueError, match="only 5 usable records"):
        load_stream("counterfact", 6, 4, counterfact_trio)


def test_a_stream_comes_in_batches_of_batch_size_with_a_short_last_one(counterfact_trio):
    stream = load_stream("counterfact", 5, 2, counterfact_trio)
    assert [len(b) for b in stream.batches()] == [2, 2, 1]


@real_data
def test_the_shared_counterfact_stream_has_1000_cases_with_rephrases():
    stream = load_stream(
        "counterfact",
        1000,
        4,
        [f"counterfact/counterfact-{part}.json" for part in ("edit", "train", "val")],
    )
    ids = [r.case_id for r in stream.records]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(r.rephrase.strip() for r in stream.records)
