"""ELDER's query_pool=subject (issue #24): an edit is stored at its subject's last token, and
an input is matched at its best prompt token."""

from dataclasses import replace

import pytest
import torch

from elder.memory import pool, similarity
from tests.conftest import tiny
from tests.elder.test_elder import _elder, _records
from tests.elder.test_memory_options import _allocations, _prompts

SUBJECT = {"route": "memory", "query_pool": "subject", "iterations": 3, "lr": 1e-2}


def test_an_edit_query_is_the_state_at_its_subjects_last_token():
    h = torch.randn(2, 5, 3)  # (B, T, d)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    got = pool(h, mask, torch.tensor([3, 4]), "subject", torch.tensor([2, 1]))
    torch.testing.assert_close(got, torch.stack([h[0, 2], h[1, 1]]))


def test_an_inputs_query_is_its_prompt_tokens_after_the_first():
    h = torch.randn(1, 5, 3)
    h[0, 4] = float("nan")  # padding
    got = pool(h, torch.tensor([[1, 1, 1, 1, 0]]), torch.tensor([2]), "subject")  # (1, T, d)
    assert got.shape == (1, 5, 3)
    torch.testing.assert_close(got[0, 1:3], h[0, 1:3])
    assert not got[0, [0, 3, 4]].any()  # the first token, the target token and padding


def test_a_token_set_is_as_near_as_its_best_token_and_its_empty_tokens_count_for_nothing():
    keys = torch.eye(2)  # (M=2, d=2) unit keys
    tokens = torch.tensor([[[0.0, 0], [-1, -1], [-1, 1]]])  # (1, T=3, d); an empty one counts 0
    half = 0.5**0.5
    torch.testing.assert_close(similarity(tokens, keys), torch.tensor([[-half, half]]))


def test_an_edit_prompt_is_at_distance_zero_from_its_own_stored_query():
    editor = _elder(tiny("llama"), **SUBJECT)
    records = _records(4)
    editor.edit(records)
    distance, index = editor.memory.nearest(editor.query(_prompts(editor, records)))
    assert torch.equal(index, torch.arange(4))
    torch.testing.assert_close(distance, torch.zeros(4), atol=1e-5, rtol=0)


def test_an_edit_prompt_is_routed_to_its_preset_allocation_with_the_subject_query():
    editor = _elder(tiny("llama"), **SUBJECT, radius=1e-4)
    records = _records(4)
    editor.edit(records)
    preset = editor.allocations.batch([editor.label_of(r) for r in records])
    assert torch.equal(_allocations(editor, _prompts(editor, records)), preset.sort(-1).values)


def test_subject_queries_need_memory_routing():
    with pytest.raises(ValueError, match="query_pool=subject needs route=memory"):
        _elder(tiny("llama"), query_pool="subject")


def test_an_edit_whose_subject_is_not_in_its_prompt_is_refused_before_any_edit():
    editor = _elder(tiny("llama"), **SUBJECT)
    records = [replace(r, subject="Nowhere") for r in _records(2)]
    with pytest.raises(ValueError, match="query_pool=subject: subject 'Nowhere'"):
        editor.check_stream(records)
