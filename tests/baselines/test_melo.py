"""MELO on tiny models: database rules, frozen earlier blocks, edits become the argmax."""

import pytest
import torch

from baselines.melo import MELO, NO_LORA, VectorDatabase
from elder.encoding import encode
from tests.baselines.helpers import argmax_hits, base_params_unchanged, records
from tests.conftest import tiny


def _melo(model, **overrides):
    layers = model.layers["melo"]
    return MELO(
        model, key_module=layers["key_module"], lora_modules=layers["lora_modules"], **overrides
    )


def test_database_rules_on_hand_built_keys():
    db = VectorDatabase(init_radius=1.0)
    assert db.insert(torch.tensor([0.0, 0.0]), "a", block=0) == "add"
    assert db.insert(torch.tensor([5.0, 0.0]), "a", block=0) == "add"  # d=5 > 1 + 1
    # near, same label: joins; center = mean, radius = max(init, largest spread)
    assert db.insert(torch.tensor([0.0, 1.5]), "a", block=1) == "expand"
    torch.testing.assert_close(db.centers[0], torch.tensor([0.0, 0.75]))
    assert db.radii[0] == pytest.approx(1.0)
    assert len(db.keys[0]) == 2
    # near, different label: conflict: old radius d/2, new cluster of radius d/2, and the old
    # members now outside the shrunk radius are dropped
    assert db.insert(torch.tensor([0.0, 2.0]), "b", block=2) == "conflict"
    assert len(db) == 3 and db.radii[0] == pytest.approx(0.625, abs=1e-4)
    # both old members lie outside 0.625 of the center (0, 0.75): the center stays, no block
    assert db.forgotten == 2 and db.blocks[0] == [NO_LORA] and db.conflicts == 1
    found = db.search(torch.tensor([[0.0, 2.0], [5.0, 0.1], [20.0, 0.0]]))
    assert found.tolist() == [2, 0, NO_LORA]


def test_batches_become_the_argmax_and_leave_earlier_blocks_bit_identical(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.hf.named_parameters()}
    editor = _melo(tiny_model, iterations=30, lr=0.1)  # a tiny random model needs big steps
    batch = records(2)  # one edit per batch: a tiny random model fits one fact per block
    editor.edit(batch[:1])
    assert argmax_hits(editor, batch[:1]).all()
    first = [(a[0].clone(), b[0].clone()) for a, b in ((m.lora_A, m.lora_B) for m in editor.layers)]
    editor.edit(batch[1:])
    assert argmax_hits(editor, batch).all()
    for (a, b), layer in zip(first, editor.layers, strict=True):
        assert torch.equal(layer.lora_A[0], a) and torch.equal(layer.lora_B[0], b)
        assert len(layer.lora_A) == 2
    base_params_unchanged(tiny_model, before)
    in_f, out_f = editor.layers[0].in_features, editor.layers[0].out_features
    assert editor.extra_params() == 2 * len(editor.layers) * 2 * (in_f + out_f)


def test_misses_use_no_lora_and_state_rebuilds_the_edit():
    model = tiny("llama")
    editor = _melo(model, iterations=3, init_radius=1e-3)
    editor.edit(records(2))
    enc = encode(model.tokenizer, ["Zebras are known for"], ["stripes"])
    out = editor.forward(enc)
    assert not out.info["hit"].any()
    assert torch.equal(out.logits, model.hf(input_ids=enc.input_ids).logits)
    tensors, meta = editor.state()
    rebuilt = _melo(tiny("llama"), init_radius=1e-3)
    rebuilt.load_state(tensors, meta)
    batch = records(2)
    enc = encode(model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    assert editor.forward(enc).info["hit"].all()
    assert torch.equal(rebuilt.forward(enc).logits, editor.forward(enc).logits)


def test_key_layer_after_a_lora_layer_is_refused():
    model = tiny("llama")
    with pytest.raises(ValueError, match="must come before"):
        MELO(
            model,
            key_module="model.layers.5.mlp.down_proj",
            lora_modules=["model.layers.5.mlp.down_proj"],
        )
