"""FT-L: fine-tunes one layer only, within ±eps of the original weights."""

import pytest
import torch

from baselines.ft_l import FTL
from elder.encoding import encode
from tests.baselines.zsre_helpers import records, target_is_argmax, weights
from tests.conftest import tiny


def _changed(before, model) -> set[str]:
    after = model.hf.state_dict()
    return {k for k, v in before.items() if not torch.equal(after[k], v)}


def test_edit_is_learned_in_the_configured_layer_only_within_eps(tiny_model):
    record = records(1)[0]
    module = tiny_model.layers["ft_l"]["module"]
    before = weights(tiny_model)
    # A random tiny model needs a wide box and a large step to learn a fact in one layer.
    editor = FTL(tiny_model, module=module, lr=5e-2, iterations=60, eps=1.0)
    editor.edit([record])
    assert target_is_argmax(editor, record)
    assert _changed(before, tiny_model) <= {f"{module}.weight", f"{module}.bias"}
    assert f"{module}.weight" in _changed(before, tiny_model)
    for key, p in editor.params.items():
        assert (p - before[f"{module}.{key}"]).abs().max() <= 1.0 + 1e-6

    tensors, meta = editor.state()
    arch = "gpt2" if "transformer" in module else "llama"
    rebuilt = FTL(fresh := tiny(arch), module=module)
    rebuilt.load_state(tensors, meta)
    enc = encode(fresh.tokenizer, [record.prompt], [record.target])
    torch.testing.assert_close(rebuilt.forward(enc).logits, editor.forward(enc).logits)


@pytest.mark.parametrize("reference, bound", [("original", 1.0), ("batch", 2.0)])
def test_clamp_reference_bounds_the_drift_over_a_stream(reference, bound):
    model = tiny("gpt2")
    module = model.layers["ft_l"]["module"]
    w0 = model.module(module).weight.detach().clone()
    editor = FTL(model, module=module, lr=1e-1, iterations=3, eps=1e-3, clamp_reference=reference)
    stream = records(2)
    editor.edit(stream[:1])
    editor.edit(stream[1:])
    drift = (model.module(module).weight - w0).abs().max().item()
    assert drift <= bound * 1e-3 + 1e-7
    assert drift > 1e-3 + 1e-7 if reference == "batch" else True  # lr 0.1 saturates the box
