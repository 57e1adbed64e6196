"""T-Patcher: a patch fires on its edit and not on its memory set, right edits get no patch,
earlier patches stay frozen and the edit joins the memory, state rebuilds the patches."""

import pytest
import torch

from baselines.t_patcher import TPatcher, stalled, top_k_mean
from elder.editor import EditRecord
from elder.encoding import encode
from tests.baselines.helpers import argmax_hits
from tests.conftest import tiny

MEMORY = [
    ["The weather in spring is", "mild"],
    ["Bananas are", "yellow"],
    ["The largest ocean is the", "Pacific"],
    ["Cats like to", "sleep"],
]
EDITS = [
    EditRecord("Tell me about Danielle Darrieux", "Paris", "r", "l", "t", "Danielle Darrieux"),
    EditRecord("The mother tongue of Edwin Hubble is", "Dutch", "r", "l", "t", "Edwin Hubble"),
]


def _patcher(model, **overrides) -> TPatcher:
    config = {
        "module": model.layers["t_patcher"]["module"],
        "memory_prompts": MEMORY,
        "max_steps": 400,
        **overrides,
    }
    return TPatcher(model, **config)


def _pre_activations(editor: TPatcher, vectors: torch.Tensor) -> torch.Tensor:
    """x·k + b of every frozen patch neuron (N, P) on FFN inputs (N, d)."""
    return vectors @ editor.layer.keys.T + editor.layer.bias


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_patch_fires_on_its_edit_and_not_on_its_memory_set(arch):
    editor = _patcher(tiny(arch))
    editor.edit(EDITS[:1])
    assert argmax_hits(editor, EDITS[:1]).all()
    assert len(editor.layer.keys) >= 1
    edit_vectors = editor.vectors([(EDITS[0].prompt, EDITS[0].target)])
    memory = editor.vectors([tuple(p) for p in MEMORY])
    # each neuron's strongest input is on the edit, and it stays below 0 on the whole memory
    assert (_pre_activations(editor, edit_vectors).max(0).values > 0).all()
    assert (_pre_activations(editor, memory) < 0).all()


def test_an_edit_the_model_already_answers_gets_no_patch():
    editor = _patcher(tiny("llama"))
    assert editor.edit(EDITS[:1])["patched"] == 1.0
    neurons = len(editor.layer.keys)
    stats = editor.edit(EDITS[:1])  # now answered right
    assert stats["patched"] == 0.0 and len(editor.layer.keys) == neurons


def test_earlier_patches_are_frozen_and_the_edit_joins_the_memory():
    editor = _patcher(tiny("llama"))
    editor.edit(EDITS[:1])
    first = editor.layer.keys.clone(), editor.layer.values.clone()
    size, val_size = len(editor.memory), len(editor.val_memory)
    editor.edit(EDITS[1:])
    n = len(first[0])
    assert torch.equal(editor.layer.keys[:n], first[0])
    assert torch.equal(editor.layer.values[:n], first[1])
    assert len(editor.memory) > size  # the second edit's vectors joined it too
    assert len(editor.val_memory) - val_size == len(editor.memory) - size  # and the other


def test_with_relu_a_patch_leaves_its_memory_prompts_exactly_as_they_were():
    model = tiny("llama")
    prompts = [p for p, _ in MEMORY]
    enc = encode(model.tokenizer, prompts, [a for _, a in MEMORY])
    before = model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    editor = _patcher(model, activation="relu")
    editor.edit(EDITS[:1])
    out = editor.forward(enc).logits
    first = enc.attention_mask.clone()
    first[:, 1:] = 0  # the first token is not in the memory: compare the rest
    rest = enc.attention_mask.bool() & ~first.bool()
    assert torch.equal(out[rest], before[rest])


def test_state_rebuilds_the_patches():
    editor = _patcher(tiny("llama"))
    editor.edit(EDITS)
    tensors, meta = editor.state()
    rebuilt = _patcher(fresh := tiny("llama"))
    rebuilt.load_state(tensors, meta)
    enc = encode(fresh.tokenizer, [r.prompt for r in EDITS], [r.target for r in EDITS])
    torch.testing.assert_close(rebuilt.forward(enc).logits, editor.forward(enc).logits)
    rebuilt.prepare()
    assert torch.equal(rebuilt.memory, editor.memory)  # the edits' vectors rejoin it


def test_the_losses_read_like_the_reference():
    assert top_k_mean(torch.tensor([1.0, 5.0, 3.0]), 2).item() == 4.0
    assert not stalled([3.0], 0.001) and not stalled([3.0, 2.0], 0.001)
    assert stalled([3.0, 2.9995], 0.001)  # not lower by more than the threshold


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="max_neurons"):
        _patcher(tiny("llama"), max_neurons=0)
