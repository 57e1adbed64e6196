"""Each metric on hand-made outputs with known scores."""

import pytest

from experiments.retention import metrics as M
from experiments.retention.prompts import Prompt, clean


def _one_each(records):
    return [Prompt(i, "") for i in range(len(records))]


def test_gsm8k_solve_rate_reads_the_last_number():
    records = [{"answer": "18"}, {"answer": "1200"}, {"answer": "3"}]
    outputs = ["9 * 2 = 18 dollars.", "so 1,200 in all", "3 apples, then 4"]
    assert M.gsm8k(records, _one_each(records), outputs) == {"gsm8k": pytest.approx(2 / 3)}


def test_gsm8k_gold_is_gu_substring_rule():
    records = [{"answer": "18"}, {"answer": "7"}]
    assert M.gsm8k_gold(records, _one_each(records), ["$18.", "1"]) == {"gsm8k_gold": 0.5}


def test_rte_two_way_accuracy_counts_unparsed_as_wrong():
    records = [{"label": "entailment"}, {"label": "not_entailment"}, {"label": "entailment"}]
    outputs = ["True", "false.", "maybe"]
    assert M.rte(records, _one_each(records), outputs)["rte"] == pytest.approx(2 / 3)


def test_nq_normalised_exact_match_and_gu_span_variant():
    records = [{"answers": ["Wilhelm Röntgen"]}, {"answers": ["1776", "July 4"]}]
    outputs = ["the Wilhelm Röntgen.", "It was signed on July 4, 1776"]
    scores = M.nq(records, _one_each(records), outputs)
    assert scores == {"nq": 0.5, "nq_contains": 1.0}


def test_boolq_exact_match_on_first_word():
    records = [{"answer": True}, {"answer": False}, {"answer": True}]
    outputs = ["Yes.", "no", "yesterday"]
    assert M.boolq(records, _one_each(records), outputs)["boolq"] == pytest.approx(2 / 3)


def test_mutual_takes_the_first_standalone_letter():
    records = [{"answer": "B"}, {"answer": "C"}, {"answer": "A"}, {"answer": "D"}]
    outputs = ["(B)", "C.", "Among", "none"]
    assert M.mutual(records, _one_each(records), outputs)["mutual"] == 0.5


def test_samsum_rouge_on_a_known_pair():
    # reference "the cat sat on the mat", prediction "the cat sat": unigrams P=1, R=1/2,
    # F1=2/3; bigrams P=1, R=2/5, F=4/7; LCS=3: F=2/3.
    expected = (2 / 3 + 4 / 7 + 2 / 3) / 3
    assert M.rouge_mean("the cat sat", "the cat sat on the mat") == pytest.approx(expected)
    records = [{"summary": "the cat sat on the mat"}, {"summary": "a dog"}]
    scores = M.samsum(records, _one_each(records), ["the cat sat", ""])
    assert scores["samsum"] == pytest.approx(expected / 2)


def test_entity_strings_become_iob_tags():
    tokens = ["John", "Smith", "visited", "New", "York", "and", "U.S.", "."]
    tags = M.entities_to_tags(tokens, {"PER": ["John Smith"], "LOC": ["New York", "U.S."]})
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-LOC", "O"]
    assert M.split_entities(" John Smith, New York; ") == ["John Smith", "New York"]


def test_conll03_entity_f1_with_seqeval_and_gu_substring_recall():
    records = [
        {
            "tokens": ["John", "Smith", "visited", "Paris", "with", "Reuters", "."],
            "tags": ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O"],
        }
    ]
    prompts = [Prompt(0, "", k) for k in ("PER", "LOC", "ORG", "MISC")]
    # PER right, LOC wrong (a non-entity span), ORG missed, MISC correctly empty.
    outputs = ["John Smith", "visited", "", ""]
    scores = M.conll03(records, prompts, outputs)
    # predicted {PER(0,1), LOC(2,2)}, gold {PER, LOC(3,3), ORG}: P=1/2, R=1/3, F1=2/5
    assert scores["conll03"] == pytest.approx(0.4)
    # substring recall per type: PER 1/1, LOC 0/1, ORG 0/1, MISC (no gold, empty) 1/1
    assert scores["conll03_recall"] == pytest.approx(0.5)


def test_sst2_accuracy():
    records = [{"label": 1}, {"label": 0}, {"label": 0}, {"label": 1}]
    outputs = ["Positive", "negative", "positive", "neutral"]
    assert M.sst2(records, _one_each(records), outputs)["sst2"] == 0.5


def test_outputs_are_cut_at_the_stop_string():
    assert clean("samsum", " Tom gets a puppy.\nB: ok") == "Tom gets a puppy."
    assert clean("gsm8k", "3 + 4 = 7\nSo 7.\n\nQ: next") == "3 + 4 = 7\nSo 7."
    assert clean("nq", "\n\n Paris\nLondon") == "Paris"  # line breaks before the answer
