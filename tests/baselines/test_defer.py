"""Defer: the model is untouched until the first edit, the value head answers where the gate
opens, everything else gets the unedited output, and state rebuilds the heads."""

import pytest
import torch

from baselines.defer import Defer
from elder.editor import EditRecord
from elder.encoding import encode
from tests.baselines.helpers import argmax_hits
from tests.conftest import tiny

EDIT = EditRecord("Tell me about Danielle Darrieux", "Paris", "r", "l", "t")


def _defer(model, **overrides) -> Defer:
    return Defer(model, module=model.layers["grace"]["module"], **overrides)


def _logits(model, prompts: list[str]) -> torch.Tensor:
    enc = encode(model.tokenizer, prompts, ["x"] * len(prompts))
    return model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits


def test_before_the_first_edit_the_model_is_unchanged():
    model = tiny("llama")
    before = _logits(model, [EDIT.prompt])
    editor = _defer(model)
    enc = encode(model.tokenizer, [EDIT.prompt], ["x"])
    assert torch.equal(editor.forward(enc).logits, before)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_an_edit_opens_the_gate_and_the_value_head_answers_it(arch):
    editor = _defer(tiny(arch))
    stats = editor.edit([EDIT])
    assert stats["gate"] >= 0.5
    assert argmax_hits(editor, [EDIT]).all()
    enc = encode(editor.model.tokenizer, [EDIT.prompt], [EDIT.target])
    assert editor.forward(enc).info["in_scope"].tolist() == [1.0]


def test_a_closed_gate_leaves_the_unedited_output():
    model = tiny("llama")
    prompts = [EDIT.prompt, "The weather in spring is"]
    before = _logits(model, prompts)
    editor = _defer(model)
    editor.edit([EDIT])
    with torch.no_grad():
        editor.layer.gate.bias.fill_(-1e4)  # the gate closed everywhere
    enc = encode(model.tokenizer, prompts, ["x"] * 2)
    out = editor.forward(enc)
    assert out.info["in_scope"].tolist() == [0.0, 0.0]
    assert torch.equal(out.logits, before)


def test_state_rebuilds_the_heads():
    editor = _defer(tiny("llama"), iterations=10)
    editor.edit([EDIT])
    tensors, meta = editor.state()
    rebuilt = _defer(fresh := tiny("llama"))
    rebuilt.load_state(tensors, meta)
    enc = encode(fresh.tokenizer, [EDIT.prompt], [EDIT.target])
    assert torch.equal(rebuilt.forward(enc).logits, editor.forward(enc).logits)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        _defer(tiny("llama"), threshold=1.5)
