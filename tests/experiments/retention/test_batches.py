"""How prompts are grouped into generation batches: longest first, padding bounded."""

import pytest

from experiments.retention.generate import batches


def test_without_max_padding_batches_are_fixed_runs_of_the_longest_first():
    assert batches([3, 9, 5, 7, 1], n_new=2, batch_size=2) == [[1, 3], [2, 0], [4]]


def test_every_prompt_lands_in_exactly_one_batch():
    lengths = [40, 3, 17, 17, 250, 8, 90, 12, 33, 5, 61]
    groups = batches(lengths, n_new=4, batch_size=4, max_padding=0.1)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 4 for g in groups)


def test_a_long_prompt_with_a_short_answer_is_not_padded_against_short_ones():
    # rows x (longest + new) against sum(prompt + new): 2 x 402 > 1.1 x (402 + 52)
    assert batches([400, 50, 50, 50], n_new=2, batch_size=4, max_padding=0.1) == [[0], [1, 2, 3]]


def test_a_long_answer_budget_keeps_full_batches_despite_uneven_prompts():
    # decode-bound: 4 x (60 + 128) is within 1.1 x (60 + 40 + 40 + 40 + 4 x 128)
    assert batches([60, 40, 40, 40], n_new=128, batch_size=4, max_padding=0.1) == [[0, 1, 2, 3]]


def test_padded_work_of_each_batch_stays_within_the_bound():
    lengths = [690, 420, 300, 180, 175, 160, 150, 150, 140, 120, 100, 90, 60]
    for pad in (0.0, 0.2):
        for g in batches(lengths, n_new=16, batch_size=8, max_padding=pad):
            real = sum(lengths[i] + 16 for i in g)
            assert len(g) * (lengths[g[0]] + 16) <= (1 + pad) * real


@pytest.mark.parametrize("pad", [0.0, 0.5])
def test_batches_list_the_longest_prompt_first(pad):
    lengths = [5, 80, 20, 20, 45]
    for g in batches(lengths, n_new=3, batch_size=3, max_padding=pad):
        assert lengths[g[0]] == max(lengths[i] for i in g)
