"""ELDER on tiny models: guided loss, deferral, frozen base weights, fast path = plain path."""

import copy

import pytest
import torch

from elder import ELDER
from elder.allocation import pack
from elder.encoding import encode
from tests.conftest import compose_cfg, tiny


def _records(n=8):
    from hydra.utils import instantiate

    return instantiate(compose_cfg(f"data.n_edits={n}").data).records


def _elder(model, **overrides):
    layers = model.layers["elder"]
    config = {
        "layer_pattern": layers["pattern"],
        "first_layer": layers["first"],
        "query_block": layers["query_block"],
        **overrides,
    }
    return ELDER(model, **config)


def test_guided_loss_equals_its_formula_on_a_hand_built_case():
    editor = _elder(tiny("llama"), L=2, N=3, k=1, eps=2)
    scores = torch.tensor(
        [[[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], [[0.1, 0.1, 0.8], [0.25, 0.25, 0.5]]]
    )  # (B=2, L=2, N=3)
    preset = torch.tensor([[[1], [0]], [[2], [1]]])  # (B, L, k)
    expected = (
        -(
            torch.log(torch.tensor(0.5))
            + torch.log(torch.tensor(0.6))
            + torch.log(torch.tensor(0.8))
            + torch.log(torch.tensor(0.25))
        )
        / 2
    )
    torch.testing.assert_close(editor.aux_loss(scores, preset), expected)


def test_balance_loss_is_n_times_sum_of_dispatch_share_times_mean_prob():
    editor = _elder(tiny("llama"), L=1, N=2, k=1, eps=1, aux_loss="balance")
    scores = torch.tensor([[[0.9, 0.1]], [[0.8, 0.2]]])  # both routed to expert 0
    # f = (1, 0), P = (0.85, 0.15): N * Σ f_i P_i = 2 * 0.85
    torch.testing.assert_close(editor.aux_loss(scores, None), torch.tensor(1.7))


def test_construction_leaves_the_model_unchanged(tiny_model):
    enc = encode(tiny_model.tokenizer, ["The capital of France is"], ["Paris"])
    before = tiny_model.hf(input_ids=enc.input_ids).logits
    editor = _elder(tiny_model)
    assert torch.equal(editor.forward(enc).logits, before)


def test_input_far_from_every_stored_code_gets_the_unedited_logits(tiny_model):
    records = _records(4)
    enc = encode(
        tiny_model.tokenizer, [r.loc_prompt for r in records], [r.loc_target for r in records]
    )
    unedited = tiny_model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    editor = _elder(tiny_model, iterations=3, lr=1e-2, eps=6)
    editor.edit(records)
    # Store only codes at the largest possible distance (disjoint experts) from these inputs.
    with editor.routing(enc.attention_mask, enc.prompt_last) as state:
        tiny_model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    codes = editor.scores(state["query"])
    far = torch.zeros_like(codes, dtype=torch.bool)
    far.scatter_(-1, codes.topk(editor.config.k, -1).indices, True)
    editor.codes = pack((~far).flatten(1))  # k=2 of N=4: the other two experts everywhere
    out = editor.forward(enc)
    assert out.info["deferred"].all()
    assert torch.equal(out.logits, unedited)


def test_edited_prompts_are_not_deferred(tiny_model):
    records = _records(4)
    editor = _elder(tiny_model, iterations=2)
    editor.edit(records)
    enc = encode(tiny_model.tokenizer, [r.prompt for r in records], [r.target for r in records])
    assert not editor.forward(enc).info["deferred"].any()


def test_base_weights_are_unchanged_after_a_stream(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.hf.state_dict().items()}
    editor = _elder(tiny_model, iterations=3, lr=1e-2)
    records = _records(8)
    for i in range(0, 8, 4):
        editor.edit(records[i : i + 4])
    after = tiny_model.hf.state_dict()
    for name, value in before.items():
        moved = name.replace(".down_proj.", ".down_proj.base_layer.").replace(
            ".c_fc.", ".c_fc.base_layer."
        )
        key = name if name in after else moved
        assert torch.equal(after[key], value), name
    assert editor.extra_params() > 0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_fast_path_and_plain_path_give_the_same_edited_model(arch):
    records = _records(8)
    editors = []
    for fast in (True, False):
        model = tiny(arch)
        model.hf.double()  # float64: float32 rounding, compounded by Adam, once broke 1e-5
        torch.manual_seed(1)
        editor = _elder(model, iterations=5, lr=1e-2, fast_path=fast)
        for i in range(0, 8, 4):
            editor.edit(records[i : i + 4])
        editors.append(editor)
    fast, plain = editors
    for a, b in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert torch.equal(fast.codes, plain.codes)


def test_hard_routing_trains_through_the_preset_experts():
    model = tiny("llama")
    editor = _elder(model, iterations=1, routing="hard", lr=1e-2)
    records = _records(4)
    before = [copy.deepcopy(layer.lora_B.detach()) for layer in editor.layers]
    editor.edit(records)
    preset = editor.allocations.batch([editor.label_of(r) for r in records])  # (B, L, k)
    for layer_index, layer in enumerate(editor.layers):
        moved = (layer.lora_B.detach() != before[layer_index]).flatten(1).any(-1)  # (N,)
        used = torch.zeros(editor.config.N, dtype=torch.bool)
        used[preset[:, layer_index].flatten()] = True
        assert torch.equal(moved, used)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"k": 5}, "k must be in"),
        ({"eps": 99}, "eps must be in"),
        ({"routing": "fuzzy"}, "routing must be"),
        ({"first_layer": 7, "query_block": 7}, "do not exist"),
    ],
)
def test_impossible_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        _elder(tiny("llama"), **bad)


def test_a_stream_with_more_labels_than_allocations_is_refused_and_one_within_is_not():
    editor = _elder(tiny("llama"), L=1, N=2, k=1, eps=1)  # C(2,1)^1 = 2 allocations
    records = _records(3)
    editor.check_stream(records[:2])
    editor.check_stream([records[0]] * 5 + [records[1]])  # repeated labels share one
    with pytest.raises(ValueError, match="3 distinct labels"):
        editor.check_stream(records)
