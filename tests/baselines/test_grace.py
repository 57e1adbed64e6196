"""GRACE on tiny models: codebook rules, edits become the argmax, base weights untouched."""

import pytest
import torch
from torch import nn

from baselines.grace import GRACE, GRACELayer
from elder.encoding import encode
from tests.baselines.helpers import argmax_hits, base_params_unchanged, logits, records
from tests.conftest import tiny


def _grace(model, **overrides):
    return GRACE(model, module=model.layers["grace"]["module"], **overrides)


# A random tiny model barely carries a value from earlier positions to the one that predicts
# the answer: tests that need an edit learned let the value replace that position too.
# (SmolLM2 learns every edit in both prompt modes: results/runs/grace_zsre100_*.)
LEARNS = dict(replacement="replace_prompt")


def test_codebook_rules_on_hand_built_keys():
    layer = GRACELayer(nn.Linear(2, 3), "replace_prompt")
    value = torch.zeros(3)
    assert layer.update_codebook(torch.tensor([0.0, 0.0]), "a", value, 1.0) == (0, "add")
    # far (d=5 > eps_init + eps = 2): a new entry
    assert layer.update_codebook(torch.tensor([5.0, 0.0]), "a", value, 1.0) == (1, "add")
    # near (d=1.5 <= 2), same label, outside the radius: expand ("coverage") to d
    assert layer.update_codebook(torch.tensor([0.0, 1.5]), "a", value, 1.0) == (0, "expand")
    assert layer.radius[0].item() == pytest.approx(1.5)
    # near, different label: a new entry and both radii split to d/2 (the old one a bit less)
    assert layer.update_codebook(torch.tensor([6.0, 0.0]), "b", value, 1.0) == (2, "split")
    assert layer.radius[2].item() == pytest.approx(0.5)
    assert layer.radius[1].item() < 0.5
    # inside a radius with the same label: nothing changes, that entry trains
    assert layer.update_codebook(torch.tensor([0.0, 1.0]), "a", value, 1.0) == (0, "covered")
    assert layer.labels == ["a", "a", "b"]


def test_construction_leaves_the_model_unchanged(tiny_model):
    batch = records(2)
    before = logits(tiny_model, batch)
    editor = _grace(tiny_model)
    enc = encode(tiny_model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    out = editor.forward(enc)
    assert torch.equal(out.logits, before)
    assert not out.info["hit"].any()


def test_edit_becomes_the_argmax_and_base_weights_stay(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.hf.named_parameters()}
    editor = _grace(tiny_model, iterations=25, **LEARNS)
    batch = records(2)
    for record in batch:
        editor.edit([record])
        assert argmax_hits(editor, [record]).all()
    base_params_unchanged(tiny_model, before)
    assert editor.extra_params() == sum(
        t.numel() for t in (editor.layer.keys, editor.layer.values, editor.layer.radius)
    )


def test_misses_get_the_unedited_logits_and_state_rebuilds_the_edit():
    model = tiny("llama")
    editor = _grace(model, iterations=5)
    editor.edit(records(2))
    enc = encode(model.tokenizer, ["Zebras are known for"], ["stripes"])
    unedited = model.hf(input_ids=enc.input_ids).logits
    editor.layer.radius.fill_(1e-6)  # nothing but the keys themselves is in range
    out = editor.forward(enc)
    assert not out.info["hit"].any() and torch.equal(out.logits, unedited)
    tensors, meta = editor.state()
    rebuilt = _grace(tiny("llama"))
    rebuilt.load_state(tensors, meta)
    batch = records(2)
    enc = encode(model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    assert torch.equal(rebuilt.forward(enc).logits, editor.forward(enc).logits)


def test_generate_replaces_at_prefill_and_keeps_the_lookup():
    model = tiny("llama")
    editor = _grace(model, iterations=25, **LEARNS)
    record = records(1)[0]
    editor.edit([record])
    ids = model.tokenizer([record.prompt], return_tensors="pt")
    out = editor.generate(ids.input_ids, ids.attention_mask, max_new_tokens=2)
    target = model.tokenizer(f" {record.target}", add_special_tokens=False).input_ids
    assert out.info["hit"].all() and out.tokens[0, 0].item() == target[0]


def _edited_values(batched: bool, batch) -> tuple[torch.Tensor, dict]:
    model = tiny("llama")
    model.hf.double()  # float64: the two schedules then agree far below any training effect
    torch.manual_seed(0)
    # a small eps_init keeps distinct prompts in distinct entries (tiny models' keys are close)
    editor = _grace(model, iterations=10, batched=batched, eps_init=1e-3)
    editor.edit(batch)
    return editor.layer.values, editor.rules


def test_a_batch_trained_together_matches_one_edit_after_another():
    together, rules = _edited_values(True, records(4))
    one_by_one, same_rules = _edited_values(False, records(4))
    assert rules == same_rules and rules["add"] == 4
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=1e-9)


def test_edits_sharing_an_entry_are_trained_in_stream_order():
    batch = [records(1)[0], records(1)[0]]  # the second edit is covered by the first's entry
    together, rules = _edited_values(True, batch)
    one_by_one, _ = _edited_values(False, batch)
    assert rules["covered"] == 1 and len(together) == 1
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=0)


def test_the_references_prompt_replacement_leaves_the_last_prompt_token_alone():
    prompt_last = torch.tensor([2, 3])
    hit = torch.tensor([True, True])
    masks = {}
    for mode in ("replace_prompt", "replace_prompt_ref"):
        layer = GRACELayer(nn.Linear(2, 3), mode)
        layer.prompt_last = prompt_last
        masks[mode] = layer._mask(hit, 5, first=True)
    assert masks["replace_prompt"].sum(1).tolist() == [3, 4]  # 0..p
    assert masks["replace_prompt_ref"].sum(1).tolist() == [2, 3]  # 0..p-1
    assert not masks["replace_prompt_ref"][[0, 1], prompt_last].any()
