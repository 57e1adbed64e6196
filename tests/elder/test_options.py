"""ELDER's options where the paper is silent: query, LoRA A init, optimizer, allocation label."""

import math
from dataclasses import asdict

import pytest
import torch

from elder import ELDER
from elder.config import LEGACY, ELDERConfig, upgrade
from elder.editor import EditRecord
from elder.encoding import encode
from elder.models import get_module
from tests.conftest import tiny
from tests.elder.test_elder import _elder, _records


def _record(prompt, target, fact=""):
    return EditRecord(prompt, target, prompt + "?", "Where is Rome?", "Italy", fact=fact)


def test_the_reference_query_is_the_input_of_the_fc_layer_in_the_query_block():
    model = tiny("llama")
    editor = _elder(model, query="fc_input", query_block=1)
    fc = get_module(model.hf, "model.layers.1.mlp.down_proj")
    assert editor.layers[0].router.in_features == fc.in_features  # the FFN width, not d
    enc = encode(model.tokenizer, ["The capital of France is"], ["Paris"])
    seen = {}
    handle = fc.register_forward_pre_hook(lambda m, args: seen.setdefault("v", args[0]))
    model.hf(input_ids=enc.input_ids)
    handle.remove()
    torch.testing.assert_close(editor.query(enc), seen["v"][:, enc.prompt_last[0]])


def test_the_residual_query_is_the_hidden_state_entering_the_query_block():
    model = tiny("llama")
    editor = _elder(model, query="residual", query_block=1)
    assert editor.layers[0].router.in_features == model.hf.config.hidden_size
    enc = encode(model.tokenizer, ["The capital of France is"], ["Paris"])
    hidden = model.hf(input_ids=enc.input_ids, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(editor.query(enc), hidden[:, enc.prompt_last[0]])


@pytest.mark.parametrize("query", ["fc_input", "residual"])
def test_the_fast_path_routes_from_the_same_query_as_the_plain_path(query):
    edited = []
    for fast in (True, False):
        torch.manual_seed(0)
        editor = _elder(tiny("llama"), query=query, query_block=1, fast_path=fast, iterations=3)
        editor.edit(_records(4))
        edited.append(torch.cat([layer.lora_B.detach().flatten() for layer in editor.layers]))
    torch.testing.assert_close(edited[0], edited[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("init, fan_in", [("reference", "r"), ("peft", "in")])
def test_lora_a_is_uniform_within_one_over_root_fan_in(init, fan_in):
    torch.manual_seed(0)
    editor = _elder(tiny("llama"), lora_init=init, r=8)
    a = editor.layers[0].lora_A  # (N, r, in)
    bound = 1 / math.sqrt(8 if fan_in == "r" else a.shape[-1])
    assert a.abs().max() <= bound
    assert a.abs().max() > 0.95 * bound


def test_per_batch_optimizer_is_fresh_each_batch_and_steps_its_lr_down():
    editor = _elder(tiny("llama"), optimizer="per_batch", lr=1e-2, lr_step=2, lr_gamma=0.5)
    editor.config.iterations = 5
    records = _records(8)
    editor.edit(records[:4])
    first = editor.optimizer
    editor.edit(records[4:])
    assert editor.optimizer is not first
    state = editor.optimizer.state[editor.layers[0].lora_B]
    assert int(state["step"]) == 5  # this batch's iterations only
    assert editor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**2)  # 5 // 2


def test_stream_optimizer_carries_one_adam_at_a_constant_lr_over_the_stream():
    editor = _elder(tiny("llama"), optimizer="stream", lr=1e-2, iterations=3)
    first = editor.optimizer
    records = _records(8)
    editor.edit(records[:4])
    editor.edit(records[4:])
    assert editor.optimizer is first
    assert int(first.state[editor.layers[0].lora_B]["step"]) == 6
    assert first.param_groups[0]["lr"] == 1e-2


def test_fact_labels_give_phrasings_of_one_fact_one_allocation_and_other_facts_their_own():
    editor = _elder(tiny("llama"), label="fact")
    a1, a2 = _record("Q1", "Paris", fact="f1"), _record("Q1 again", "Paris", fact="f1")
    other = _record("Q2", "Paris", fact="f2")  # the same target string, another fact
    preset = editor.allocations.batch([editor.label_of(r) for r in (a1, a2, other)])
    assert torch.equal(preset[0], preset[1])
    assert not torch.equal(preset[0], preset[2])


def test_target_labels_give_edits_with_one_target_string_one_allocation():
    editor = _elder(tiny("llama"), label="target")
    records = [_record("Q1", "Paris", fact="f1"), _record("Q2", "Paris", fact="f2")]
    preset = editor.allocations.batch([editor.label_of(r) for r in records])
    assert torch.equal(preset[0], preset[1])


def test_a_record_without_a_fact_is_a_fact_of_its_own():
    editor = _elder(tiny("llama"), label="fact")
    records = [_record("Q1", "Paris"), _record("Q2", "Paris")]
    assert editor.label_of(records[0]) != editor.label_of(records[1])


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"query": "residuals"}, "query must be one of"),
        ({"lora_init": "kaiming"}, "lora_init must be one of"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"label": "subject"}, "label must be one of"),
        ({"lr_step": -1}, "lr_step must be >= 0"),
    ],
)
def test_an_unknown_option_value_is_refused_before_any_work(bad, message):
    with pytest.raises(ValueError, match=message):
        _elder(tiny("llama"), **bad)


def test_a_config_from_before_the_options_reads_with_the_values_it_ran_with():
    old = {"layer_pattern": "x.{}", "first_layer": 2, "reset_optimizer": False, "lr": 1e-4}
    new = upgrade(old)
    assert {k: new[k] for k in LEGACY} == LEGACY
    assert "reset_optimizer" not in new
    assert upgrade({"first_layer": 2})["query"] == "residual"  # the earliest had no such key
    assert upgrade({**old, "reset_optimizer": True})["optimizer"] == "per_batch"
    assert upgrade({**old, "reset_optimizer": True})["lr_step"] == 0  # no schedule then


def test_a_config_with_todays_keys_is_not_changed():
    today = asdict(ELDERConfig(layer_pattern="model.layers.{}.mlp.down_proj", first_layer=2))
    assert upgrade(today) == today


def test_upgrade_is_what_elder_reads_a_run_folder_with():
    assert ELDER.upgrade_config({"a": 1}) == upgrade({"a": 1})


def test_a_state_saved_before_the_options_loads_into_its_upgraded_editor():
    old = {"query": "residual", "query_block": 2, "lora_init": "peft", "optimizer": "stream"}
    editor = _elder(tiny("llama"), **old, label="target")
    tensors, meta = editor.state()
    for key in ("query", "lora_init", "optimizer", "label", "lr_step", "lr_gamma"):
        del meta["config"][key]
    meta["config"]["reset_optimizer"] = False  # as a pre-#23 run wrote it
    fresh = _elder(tiny("llama"), **old, label="target")
    fresh.load_state(tensors, meta)
    assert torch.equal(fresh.layers[0].router.weight, editor.layers[0].router.weight)
