"""WISE: an edit routes to the side memory and an unrelated prompt to the main one, shards train
only their masked entries, TIES elects signs, Retrieve keeps one memory per merge, and the
irrelevant prompts never come from the stream."""

import pytest
import torch

from baselines.wise import WISE, ties_merge
from elder.editor import EditRecord
from elder.encoding import encode
from tests.baselines.helpers import argmax_hits
from tests.conftest import tiny

# A random tiny model's activation differences are ~0.1, not the ~10 of a trained 7B model:
# the margins scale down with them, and the steps up.
TINY = dict(alpha=0.05, beta=1.0, gamma=0.5, edit_lr=20.0, n_iter=40, prefix_lengths=[[3, 2]])
EDIT = EditRecord("Tell me about Danielle Darrieux", "Paris", "r", "l", "t", "Danielle Darrieux")
UNRELATED = [["The weather in spring is", "mild"], ["Bananas are", "yellow"]]


def _wise(model, **overrides) -> WISE:
    config = {"module": model.layers["wise"]["module"], "irrelevant_prompts": UNRELATED}
    return WISE(model, **{**TINY, **config, **overrides})


def _routed(editor: WISE, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = encode(editor.model.tokenizer, prompts, ["x"] * len(prompts))
    out = editor.forward(enc)
    return out.info["side"], out.logits


def test_an_edit_routes_to_the_side_memory_and_an_unrelated_prompt_to_the_main_one():
    model = tiny("llama")
    prompts = [EDIT.prompt, "The weather in spring is"]
    enc = encode(model.tokenizer, prompts, ["x"] * len(prompts))
    before = model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    editor = _wise(model)
    editor.edit([EDIT])
    side, out = _routed(editor, prompts)
    assert side.tolist() == [1.0, 0.0]
    torch.testing.assert_close(out[1], before[1], rtol=0, atol=0)  # the unedited model's
    assert not torch.allclose(out[0], before[0])
    assert argmax_hits(editor, [EDIT]).all()


def test_a_shard_trains_only_its_masked_entries():
    editor = _wise(tiny("llama"), weight_decay=0.0)
    editor.edit([EDIT])
    changed = editor.layer.side.detach() != editor.W0
    assert changed.any()
    assert not (changed & ~editor.mask).any()
    assert editor.mask.float().mean().item() == pytest.approx(0.2, abs=0.02)


def test_each_shard_draws_its_own_mask_and_restarts_from_the_main_memory():
    editor = _wise(tiny("llama"), save_freq=1, merge_freq=2)
    first = editor.mask.clone()
    editor.edit([EDIT])
    assert torch.equal(editor.layer.side.detach(), editor.W0)  # the shard was set aside
    assert len(editor.shards) == 1 and not torch.equal(editor.mask, first)


def test_retrieve_keeps_one_memory_per_merge_and_routes_each_edit_to_a_side_memory():
    editor = _wise(tiny("llama"), save_freq=1, merge_freq=1)
    other = EditRecord("Say something of Marie Curie", "Rome", "r", "l", "t", "Marie Curie")
    editor.edit([EDIT, other])
    assert len(editor.layer.memories) == 2 and editor.extra_params() == 3 * editor.W0.numel()
    side, _ = _routed(editor, [EDIT.prompt, other.prompt, "The weather in spring is"])
    assert side.tolist() == [1.0, 1.0, 0.0]


def test_ties_trims_elects_the_sign_and_averages_the_agreeing_changes():
    base = torch.zeros(1, 4)
    a = torch.tensor([[1.0, -2.0, 0.1, 3.0]])
    b = torch.tensor([[3.0, 1.0, -0.2, -1.0]])
    merged = ties_merge(base, [a, b], [0.5, 0.5], density=0.75)  # each keeps 3 of 4 entries
    # entry 0: both +, mean 2; entry 1: sum −0.5 → −, only a agrees; entry 2: both trimmed
    # (each shard's smallest); entry 3: sum +1 → +, only a agrees.
    torch.testing.assert_close(merged, torch.tensor([[2.0, -2.0, 0.0, 3.0]]))


def test_irrelevant_prompts_leave_out_every_subject_and_text_of_the_stream():
    editor = _wise(tiny("llama"), irrelevant_prompts=None)
    stream = [
        EditRecord("The mother tongue of Ana Vell 20 is", "English", "Ana Vell 20 speaks", "l",
                   "t", "Ana Vell 20"),
        EditRecord("q", "a", "r", "The mother tongue of Ana Vell 21 is", "t", "Someone"),
    ]  # fmt: skip
    editor.check_stream(stream)
    pool = {editor.irrelevant(n)[0] for n in range(100)}
    assert pool and not any("Ana Vell 20 " in p or "Ana Vell 21 " in p for p in pool)


def test_state_rebuilds_the_side_memory_memories_and_thresholds():
    editor = _wise(tiny("llama"), save_freq=1, merge_freq=1, n_iter=5)
    editor.edit([EDIT])
    tensors, meta = editor.state()
    rebuilt = _wise(tiny("llama"))
    rebuilt.load_state(tensors, meta)
    assert rebuilt.layer.min_act == editor.layer.min_act and rebuilt.n_edits == 1
    side, out = _routed(rebuilt, [EDIT.prompt])
    side_ref, out_ref = _routed(editor, [EDIT.prompt])
    assert torch.equal(side, side_ref) and torch.equal(out, out_ref)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="multiple of save_freq"):
        _wise(tiny("llama"), save_freq=3, merge_freq=4)
