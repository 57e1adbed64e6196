"""ELDER's ``protect=null_space`` (issue #24): what a stored edit trained does not move."""

import pytest
import torch
import torch.nn.functional as F

from elder.protect import NullSpace
from tests.conftest import tiny
from tests.elder.test_elder import _elder, _records
from tests.elder.test_memory_options import MEMORY, _prompts

PROTECT = {**MEMORY, "N": 2, "k": 1, "iterations": 10, "radius": 2.0, "protect": "null_space"}


def _drift(editor, records):
    """How far the first batch's target-predicting logits move while two later batches train."""
    editor.edit(records[:4])
    enc = _prompts(editor, records[:4])
    before = editor.forward(enc).logits[enc.target_mask]
    for i in (4, 8):
        editor.edit(records[i : i + 4])
    return (editor.forward(enc).logits[enc.target_mask] - before).abs().max().item()


def _nll(editor, records):
    enc = _prompts(editor, records)
    logits = editor.forward(enc).logits[enc.target_mask]
    return F.cross_entropy(logits.float(), enc.target_ids).item()


@pytest.mark.parametrize(
    "arch, options",
    [
        ("llama", {}),
        ("gpt2", {}),
        ("llama", {"N": 4, "k": 2}),
        ("llama", {"fast_path": False}),
        ("llama", {"optimizer": "stream"}),
    ],
)
def test_a_stored_edits_logits_do_not_move_when_later_batches_train(arch, options):
    editor = _elder(tiny(arch), **{**PROTECT, **options}, protect_tol=1e-6)
    assert _drift(editor, _records(12)) < 1e-5


def test_at_the_default_tolerance_they_move_a_hundredth_as_far_as_unprotected():
    records = _records(12)
    protected = _drift(_elder(tiny("llama"), **PROTECT), records)
    unprotected = _drift(_elder(tiny("llama"), **{**PROTECT, "protect": "none"}), records)
    assert protected < 1e-2 * unprotected


def test_later_edits_still_train_in_the_directions_left_free():
    editor = _elder(tiny("llama"), **{**PROTECT, "iterations": 30})
    first, later = _records(8)[:4], _records(8)[4:]
    gains = []
    for batch in (first, later):  # every LoRA holds stored inputs once the first batch is in
        before = _nll(editor, batch)
        editor.edit(batch)
        gains.append(before - _nll(editor, batch))
    assert gains[0] > 0 and gains[1] > 0.5 * gains[0]


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
    space = NullSpace(num_layers=1, num_experts=2, r=2, in_features=16, tol=1e-6)
    keys = torch.randn(5, 3) @ torch.randn(3, 16)  # rank 3
    space.add(0, 1, keys[:2], torch.randn(2, 16))
    space.add(0, 1, keys[2:], torch.randn(2, 16))
    basis = space.bases[0][1]
    assert space.ranks().tolist() == [[0, 3]]
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(keys @ basis @ basis.T, keys, rtol=0, atol=1e-4)


def test_a_step_projected_back_onto_the_anchor_leaves_the_keys_outputs_alone():
    space = NullSpace(num_layers=1, num_experts=1, r=2, in_features=16, tol=1e-6)
    keys, lora_A = torch.randn(4, 16), torch.randn(1, 2, 16)  # lora_A (N, r, in)
    space.add(0, 0, keys, lora_A[0])
    before = lora_A[0] @ keys.T
    stepped = lora_A + torch.randn(1, 2, 16)  # any update
    space.project(0, stepped)
    torch.testing.assert_close(stepped[0] @ keys.T, before, rtol=0, atol=1e-4)
    assert (stepped - lora_A).abs().max() > 0.1  # what lies off the keys is kept


def test_a_full_basis_warns_that_its_lora_can_no_longer_train():
    space = NullSpace(num_layers=1, num_experts=1, r=2, in_features=4, tol=1e-6)
    with pytest.warns(UserWarning, match="no free input direction left"):
        space.add(0, 0, torch.randn(6, 4), torch.zeros(2, 4))


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
