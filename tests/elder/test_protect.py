"""ELDER's ``protect=null_space`` (issue #24): what a stored edit trained does not move."""

import pytest
import torch

from elder.protect import NullSpace
from tests.conftest import tiny
from tests.elder.test_elder import _elder, _records
from tests.elder.test_memory_options import MEMORY, _prompts

PROTECT = {**MEMORY, "N": 2, "k": 1, "iterations": 10, "radius": 2.0, "protect": "null_space"}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_stored_edits_logits_do_not_move_when_later_batches_train(arch):
    editor = _elder(tiny(arch), **PROTECT, protect_tol=1e-6)
    records = _records(12)
    editor.edit(records[:4])
    enc = _prompts(editor, records[:4])
    before = editor.forward(enc).logits
    for i in (4, 8):
        editor.edit(records[i : i + 4])
    torch.testing.assert_close(editor.forward(enc).logits, before, rtol=0, atol=1e-5)


def test_without_protection_the_same_stream_moves_them():
    editor = _elder(tiny("llama"), **{**PROTECT, "protect": "none"})
    records = _records(12)
    editor.edit(records[:4])
    enc = _prompts(editor, records[:4])
    before = editor.forward(enc).logits
    for i in (4, 8):
        editor.edit(records[i : i + 4])
    assert (editor.forward(enc).logits - before).abs().max() > 1e-2


def test_only_lora_A_trains_from_zero_and_B_stays_as_drawn():
    editor = _elder(tiny("llama"), **PROTECT)
    drawn = [layer.lora_B.detach().clone() for layer in editor.layers]
    assert all(not layer.lora_A.any() for layer in editor.layers)  # ΔW = 0: the base model
    assert editor.parameters() == [layer.lora_A for layer in editor.layers]
    editor.edit(_records(4))
    for layer, B in zip(editor.layers, drawn, strict=True):
        assert torch.equal(layer.lora_B, B) and B.abs().sum() > 0
        assert layer.lora_A.any()


def test_the_basis_is_orthonormal_and_spans_the_keys_it_was_given():
    space = NullSpace(num_layers=1, num_experts=2, in_features=16, tol=1e-6)
    keys = torch.randn(5, 3) @ torch.randn(3, 16)  # rank 3
    space.add(0, 1, keys[:2])
    space.add(0, 1, keys[2:])
    basis = space.bases[0][1]
    assert space.ranks().tolist() == [[0, 3]]
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(keys @ basis @ basis.T, keys, rtol=0, atol=1e-4)


def test_an_update_projected_off_the_basis_leaves_the_keys_outputs_alone():
    space = NullSpace(num_layers=1, num_experts=1, in_features=16, tol=1e-6)
    keys = torch.randn(4, 16)
    space.add(0, 0, keys)
    before, after = torch.randn(1, 2, 16), torch.randn(1, 2, 16)  # lora_A (N, r, in)
    space.project(0, after, before)
    torch.testing.assert_close(after[0] @ keys.T, before[0] @ keys.T, rtol=0, atol=1e-4)


def test_the_bases_are_counted_as_memory_and_saved_with_the_state():
    records = _records(8)
    first = _elder(tiny("llama"), **PROTECT)
    first.edit(records[:4])
    assert first.memory_bytes() > first.memory.nbytes()
    tensors, meta = first.state()
    second = _elder(tiny("llama"), **PROTECT)
    second.load_state(tensors, meta)
    assert torch.equal(second.null_space.ranks(), first.null_space.ranks())
    for editor in (first, second):
        torch.manual_seed(0)
        editor.edit(records[4:])
    enc = _prompts(first, records)
    assert torch.equal(first.forward(enc).logits, second.forward(enc).logits)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({**PROTECT, "protect": "freeze"}, "protect must be"),
        ({**PROTECT, "route": "router"}, "needs route=memory"),
        ({**PROTECT, "protect_tol": 0.0}, "protect_tol must be"),
    ],
)
def test_impossible_protect_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        _elder(tiny("llama"), **bad)
