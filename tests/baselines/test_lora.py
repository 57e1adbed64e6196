"""LoRA through PEFT: injected in place, trains only its adapters, learns the edit."""

import torch

from baselines.lora import LoRA
from elder.encoding import encode
from tests.baselines.zsre_helpers import records, target_is_argmax, weights
from tests.conftest import tiny


def test_construction_keeps_the_function_and_the_module_paths(tiny_model):
    enc = encode(tiny_model.tokenizer, ["The capital of France is"], ["Paris"])
    before = tiny_model.hf(input_ids=enc.input_ids).logits
    modules = tiny_model.layers["lora"]["modules"]
    editor = LoRA(tiny_model, modules=modules, r=4)
    assert torch.equal(editor.forward(enc).logits, before)
    assert len(tiny_model.block_list) == 8  # the blocks are still where the config says
    for name in modules:
        assert hasattr(tiny_model.module(name), "base_layer")
    in_f, out_f = (64, 256) if "c_fc" in modules[0] else (128, 64)
    assert editor.extra_params() == len(modules) * 4 * (in_f + out_f)


def test_edit_is_learned_base_is_frozen_and_state_rebuilds_it(tiny_model):
    record = records(1)[0]
    before = weights(tiny_model)
    editor = LoRA(tiny_model, modules=tiny_model.layers["lora"]["modules"], lr=1e-2, iterations=100)
    editor.edit([record])
    assert target_is_argmax(editor, record)
    after = tiny_model.hf.state_dict()
    for name, value in before.items():
        moved = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(after[name if name in after else moved], value), name

    tensors, meta = editor.state()
    arch = "gpt2" if "c_fc" in meta["modules"][0] else "llama"
    rebuilt = LoRA(fresh := tiny(arch), modules=meta["modules"])
    rebuilt.load_state(tensors, meta)
    enc = encode(fresh.tokenizer, [record.prompt], [record.target])
    torch.testing.assert_close(rebuilt.forward(enc).logits, editor.forward(enc).logits)
