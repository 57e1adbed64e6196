"""Allocation codes: top-k bits per layer, bit-packed, nearest stored code by Hamming."""

import itertools

import pytest
import torch

from elder.allocation import AllocationTable, hamming, min_hamming, pack, topk_code


def test_topk_code_marks_k_experts_in_every_layer():
    scores = torch.tensor([[[0.1, 0.5, 0.3, 0.1], [0.6, 0.1, 0.1, 0.2]]])  # (1, L=2, N=4)
    code = topk_code(scores, k=2)
    assert code.tolist() == [[False, True, True, False, True, False, False, True]]


def test_packed_hamming_equals_the_bitwise_count():
    torch.manual_seed(0)
    a = torch.rand(5, 24) > 0.5
    b = torch.rand(7, 24) > 0.5
    expected = (a[:, None, :] != b[None, :, :]).sum(-1).min(-1).values
    assert torch.equal(min_hamming(pack(a), pack(b)).long(), expected)


def test_no_stored_code_is_infinitely_far():
    assert (
        min_hamming(
            pack(torch.ones(2, 24, dtype=torch.bool)), torch.empty(0, 3, dtype=torch.uint8)
        ).min()
        > 10**6
    )


def test_same_label_shares_an_allocation_and_different_labels_do_not():
    table = AllocationTable(num_layers=3, num_experts=4, k=2, seed=0)
    labels = [f"answer {i}" for i in range(100)]
    allocs = [table[label] for label in labels]
    assert torch.equal(table["answer 7"], allocs[7])
    keys = {tuple(a.flatten().tolist()) for a in allocs}
    assert len(keys) == 100
    assert all(a.shape == (3, 2) for a in allocs)


def test_running_out_of_allocations_is_a_clear_error():
    table = AllocationTable(num_layers=1, num_experts=3, k=1, seed=0)
    for label in "abc":
        table[label]
    with pytest.raises(ValueError, match="allocations"):
        table["d"]


def test_allocations_are_seeded():
    first = [AllocationTable(2, 4, 2, seed=3)[s] for s in itertools.repeat("x", 1)]
    second = [AllocationTable(2, 4, 2, seed=3)[s] for s in itertools.repeat("x", 1)]
    assert torch.equal(first[0], second[0])


def test_hamming_counts_differing_bits_pairwise_and_broadcast():
    a = pack(torch.tensor([[1, 1, 0, 0, 1, 0, 0, 0, 1]], dtype=torch.bool))  # 9 bits, 2 bytes
    b = pack(torch.tensor([[1, 0, 1, 0, 1, 0, 0, 0, 0]], dtype=torch.bool))
    assert hamming(a, b).tolist() == [3]
    assert hamming(a[:, None], torch.cat([a, b])[None]).tolist() == [[0, 3]]
