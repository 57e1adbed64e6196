"""SERAC: out-of-scope inputs get the unedited model's output exactly, in-scope ones the
counterfactual model's given the retrieved edit, training stays outside the stream, and state
rebuilds the editor."""

import json

import pytest
import torch
from transformers import StoppingCriteria

from baselines.outside import outside_records
from baselines.serac import SERAC
from elder.editor import EditRecord
from elder.encoding import encode
from tests.conftest import tiny

EDIT = EditRecord("Tell me about Danielle Darrieux", "Paris", "r", "l", "t")
CASES = [
    ["The capital of France is", "Rome", "France's capital is", "The capital of Spain is"],
    ["Toko Yasuda plays the", "piano", "Toko Yasuda is good at the", "John Lennon plays the"],
    ["The Eiffel Tower is in", "Berlin", "Where is the Eiffel Tower? In", "Big Ben is in"],
]
OTHER = "The weather in spring is"


def _serac(model, **overrides) -> SERAC:
    options = dict(classifier_steps=3, counterfactual_steps=2, train_cases=CASES, batch_size=2)
    options["lora_targets"] = model.layers["serac"]["lora_targets"]
    return SERAC(model, **options | overrides)


def _plain(model, prompts, targets):
    enc = encode(model.tokenizer, prompts, targets)
    return enc, model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_out_of_scope_inputs_get_the_unedited_output_exactly(arch):
    model = tiny(arch)
    enc, before = _plain(model, [OTHER, "A cat sat on the"], ["warm", "mat"])
    editor = _serac(model, scale=1e6)  # any distance > 0 is out of scope
    editor.edit([EDIT])
    out = editor.forward(enc)
    assert out.info["in_scope"].tolist() == [0.0, 0.0]
    assert torch.equal(out.logits, before)


def test_out_of_scope_generation_is_the_unedited_models():
    model = tiny("llama")
    editor = _serac(model, scale=1e6)
    ids = model.tokenizer([OTHER], return_tensors="pt")
    plain = model.hf.generate(**ids, max_new_tokens=4, do_sample=False)[:, ids.input_ids.shape[1] :]
    editor.edit([EDIT])
    out = editor.generate(ids.input_ids, ids.attention_mask, 4)
    assert out.info["in_scope"].tolist() == [0.0]
    assert torch.equal(out.tokens, plain)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_an_edit_is_in_scope_and_the_counterfactual_model_reads_it(arch):
    model = tiny(arch)
    editor = _serac(model, scale=1e6)
    editor.edit([EDIT])
    enc, _ = _plain(model, [EDIT.prompt], [EDIT.target])
    out = editor.forward(enc)
    assert out.info["in_scope"].tolist() == [1.0]
    # by hand: the adapters on, the edit in front of the input
    context = model.tokenizer(f"{EDIT.prompt} {EDIT.target}\n").input_ids
    row = enc.input_ids[0].tolist()
    drop = int(editor.bos is not None and row[0] == editor.bos)
    with editor.counterfactual():
        expected = model.hf(input_ids=torch.tensor([context + row[drop:]])).logits
    offset = len(context) - drop
    t = torch.arange(drop, len(row))
    assert torch.allclose(out.logits[0, t], expected[0, t + offset], atol=1e-5)
    with editor.counterfactual():
        assert editor.tuners[0].disable_adapters is False
    assert editor.tuners[0].disable_adapters is True  # off again after


def test_in_scope_generation_continues_after_the_context():
    model = tiny("llama")
    editor = _serac(model, scale=1e6)
    editor.edit([EDIT])
    ids = model.tokenizer([EDIT.prompt], return_tensors="pt")
    out = editor.generate(ids.input_ids, ids.attention_mask, 3)
    context = model.tokenizer(f"{EDIT.prompt} {EDIT.target}\n").input_ids
    row = ids.input_ids[0].tolist()
    full = torch.tensor([context + row[int(editor.bos is not None) :]])
    with editor.counterfactual():
        expected = model.hf.generate(full, max_new_tokens=3, do_sample=False)[:, full.shape[1] :]
    assert out.info["in_scope"].tolist() == [1.0]
    assert torch.equal(out.tokens, expected)


def test_training_moves_both_parts_and_leaves_the_base_model_alone():
    model = tiny("llama")
    base = [(p, p.detach().clone()) for p in model.hf.parameters()]  # the same objects after
    editor = _serac(model)
    f0 = editor.f.weight.clone()
    editor.edit([EDIT])
    assert not torch.equal(editor.f.weight, f0)
    assert any(p.abs().sum() > 0 for n, p in editor.adapters.items() if "lora_B" in n)
    assert all(torch.equal(p, before) for p, before in base)


def test_training_cases_hold_no_evaluated_text(tmp_path, monkeypatch):
    cases = [
        {"prompt": "p1", "subject": "s1", "rephrase_prompt": "r1", "locality_prompt": "l1"},
        {"prompt": "p2", "subject": "s2", "rephrase_prompt": "r2", "locality_prompt": "EVAL"},
        {"prompt": "p3", "subject": "S", "rephrase_prompt": "r3", "locality_prompt": "l3"},
    ]
    (tmp_path / "cf.json").write_text(json.dumps(cases))
    monkeypatch.setenv("ELDER_DATA_DIR", str(tmp_path))
    stream = [EditRecord("x", "y", "z", "EVAL", "t", subject="S")]
    fields = ("prompt", "rephrase_prompt", "locality_prompt")
    assert [c["prompt"] for c in outside_records("cf.json", stream, 0, fields)] == ["p1"]


def test_state_rebuilds_the_editor():
    editor = _serac(tiny("llama"))
    editor.edit([EDIT])
    tensors, meta = editor.state()
    rebuilt = _serac(fresh := tiny("llama"), classifier_steps=0, counterfactual_steps=0)
    rebuilt.load_state(tensors, meta)
    enc, _ = _plain(fresh, [EDIT.prompt, OTHER], [EDIT.target, "warm"])
    a, b = rebuilt.forward(enc), editor.forward(enc)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.info["in_scope"], b.info["in_scope"])
    rebuilt.edit([EditRecord("Another prompt", "B", "r", "l", "t")])  # no training again
    assert rebuilt.memory[0] == (EDIT.prompt, EDIT.target) and len(rebuilt.memory) == 2


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"lora_targets": ["nope"]}, "no module named"),
        ({"classifier_layer": 99}, "classifier_layer"),
    ],
)
def test_bad_options_are_refused(option, message):
    with pytest.raises(ValueError, match=message):
        _serac(tiny("llama"), **option)


class _Widths(StoppingCriteria):
    """Records the width of every batch a stopping criterion sees; never stops."""

    def __init__(self) -> None:
        self.widths: list[int] = []

    def __call__(self, input_ids, scores, **kwargs):
        self.widths.append(input_ids.shape[1])
        return torch.zeros(len(input_ids), dtype=torch.bool)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_mixed_left_padded_batch_is_scoped_as_forward_and_stop_sees_only_new_tokens(arch):
    model = tiny(arch)
    editor = _serac(model, scale=1e3)
    editor.edit([EDIT])
    long = "A much longer prompt about nothing at all, that goes on and on and on about it"
    model.tokenizer.padding_side = "left"
    try:
        ids = model.tokenizer([EDIT.prompt, long], return_tensors="pt", padding=True)
    finally:
        model.tokenizer.padding_side = "right"
    stop = _Widths()
    out = editor.generate(ids.input_ids, ids.attention_mask, 3, stop)
    assert out.info["in_scope"].tolist() == [1.0, 0.0]  # GPT-2: positions from the mask
    width = ids.input_ids.shape[1]
    assert min(stop.widths) > width  # the counterfactual call's context is cut off for `stop`
