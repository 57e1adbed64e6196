"""ELDER's options beyond the paper (issue #24): memory routing, the pooled query, rehearsal."""

import pytest
import torch

from elder.encoding import encode, left_pad
from elder.memory import pool
from tests.conftest import tiny
from tests.elder.test_elder import _elder, _records

MEMORY = {"route": "memory", "query_pool": "mean", "iterations": 3, "lr": 1e-2}


def _prompts(editor, records):
    tok = editor.model.tokenizer
    return encode(tok, [r.prompt for r in records], [r.target for r in records])


def _allocations(editor, enc):
    """The allocation each row is routed to at inference: (B, L, k) LoRA indices."""
    with editor.routing(enc.attention_mask, enc.prompt_last, defer=True) as state:
        editor.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        gates = torch.stack([layer.gates for layer in editor.layers], 1)  # (B, L, N)
    assert state["scores"] is None  # no router is asked
    return gates.topk(editor.config.k, dim=-1).indices.sort(-1).values


def test_the_mean_query_averages_the_prompt_after_its_first_token_on_either_padding():
    h = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)  # (B, T, d)
    right = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    got = pool(h, right, torch.tensor([2, 4]), "mean")
    torch.testing.assert_close(got, torch.stack([h[0, 1:3].mean(0), h[1, 1:5].mean(0)]))
    left = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 1]])
    got = pool(h, left, torch.tensor([4, 4]), "mean")
    torch.testing.assert_close(got, torch.stack([h[0, 3:5].mean(0), h[1, 4]]))  # one token: it


def test_a_prompt_gets_the_same_mean_query_alone_and_left_padded_in_a_batch():
    model = tiny("llama")
    editor = _elder(model, **MEMORY)
    texts = ["The capital of France is", "Rome is in"]
    tok = model.tokenizer
    ids, mask = left_pad([tok(t).input_ids for t in texts], tok.pad_token_id)
    last = torch.full((2,), ids.shape[1] - 1)
    with editor.routing(mask, last) as batched:
        model.hf(input_ids=ids, attention_mask=mask)
    alone = editor.query(encode(model.tokenizer, texts[1:], ["Italy"]))
    torch.testing.assert_close(batched["query"][1:], alone, rtol=1e-4, atol=1e-5)


def test_an_edit_prompt_is_routed_to_its_preset_allocation():
    editor = _elder(tiny("llama"), **MEMORY)
    records = _records(4)
    editor.edit(records)
    preset = editor.allocations.batch([editor.label_of(r) for r in records])
    assert torch.equal(_allocations(editor, _prompts(editor, records)), preset)


def test_a_stored_edits_routing_does_not_change_when_later_batches_train():
    editor = _elder(tiny("llama"), **MEMORY)
    records = _records(12)
    editor.edit(records[:4])
    enc = _prompts(editor, records[:4])
    before = _allocations(editor, enc)
    for i in (4, 8):
        editor.edit(records[i : i + 4])
    assert torch.equal(_allocations(editor, enc), before)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_an_input_beyond_the_radius_gets_the_unedited_logits(arch):
    model = tiny(arch)
    records = _records(4)
    loc = encode(model.tokenizer, [r.loc_prompt for r in records], [r.loc_target for r in records])
    unedited = model.hf(input_ids=loc.input_ids, attention_mask=loc.attention_mask).logits
    editor = _elder(model, **MEMORY, radius=1e-4)  # only a stored query itself is in reach
    editor.edit(records)
    out = editor.forward(loc)
    assert out.info["deferred"].all()
    assert torch.equal(out.logits, unedited)
    assert not editor.forward(_prompts(editor, records)).info["deferred"].any()


def test_memory_routing_trains_no_router_and_its_memory_grows_with_the_stream():
    editor = _elder(tiny("llama"), **MEMORY)
    routers = [layer.router.weight.detach().clone() for layer in editor.layers]
    params = editor.extra_params()
    records = _records(8)
    editor.edit(records[:4])
    grown = editor.memory_bytes()
    editor.edit(records[4:])
    assert editor.memory_bytes() == 2 * grown > 0
    assert editor.extra_params() == params  # LoRAs only, a constant
    for layer, before in zip(editor.layers, routers, strict=True):
        assert torch.equal(layer.router.weight, before)


def _trained_rows(editor, records):
    """The prompts of the rows each edit batch trains on, batches of 4."""
    seen, encode_rows = [], editor.encode
    editor.encode = lambda rows: seen.append([r.prompt for r in rows]) or encode_rows(rows)
    for i in range(0, len(records), 4):
        editor.edit(records[i : i + 4])
    return seen


def test_rehearsal_trains_each_batch_with_stored_edits_drawn_by_the_seed():
    records = _records(8)
    first, second = (
        _trained_rows(_elder(tiny("llama"), iterations=1, rehearse=3), records) for _ in range(2)
    )
    assert first[0] == [r.prompt for r in records[:4]]  # nothing stored yet
    assert first[1][:4] == [r.prompt for r in records[4:]]
    assert len(first[1]) == 7 and set(first[1][4:]) < {r.prompt for r in records[:4]}
    assert first == second


def test_a_saved_memory_editor_resumes_to_the_same_next_edit():
    records = _records(12)
    options = {**MEMORY, "rehearse": 2}
    first = _elder(tiny("llama"), **options)
    first.edit(records[:4])
    tensors, meta = first.state()
    second = _elder(tiny("llama"), **options)
    second.load_state(tensors, meta)
    for editor in (first, second):
        torch.manual_seed(0)
        editor.edit(records[4:8])
    enc = _prompts(first, records[:8])
    assert torch.equal(first.forward(enc).logits, second.forward(enc).logits)
    assert [r.prompt for r in second.rehearsal.records] == [r.prompt for r in records[:8]]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"route": "nearest"}, "route must be"),
        ({"query_pool": "max"}, "query_pool must be"),
        ({"radius": 3.0}, "radius must be in"),
        ({"rehearse": -1}, "rehearse must be"),
        ({"prefixes": -2}, "prefixes must be"),
        ({"stop_loss": -1.0}, "stop_loss must be"),
    ],
)
def test_impossible_memory_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        _elder(tiny("llama"), **bad)


def test_a_batch_stops_training_once_its_loss_is_below_stop_loss():
    records = _records(4)
    start = _elder(tiny("llama"), **{**MEMORY, "iterations": 1}).edit(records)["model_loss"]
    editor = _elder(tiny("llama"), **{**MEMORY, "iterations": 50}, stop_loss=0.9 * start)
    stats = editor.edit(records)
    assert 0 < stats["iterations"] < 50
    assert stats["model_loss"] < 0.9 * start


def test_a_state_saved_before_these_options_existed_loads_with_them_off():
    records = _records(4)
    editor = _elder(tiny("llama"), iterations=1)
    editor.edit(records)
    tensors, meta = editor.state()
    for key in ("route", "radius", "query_pool", "rehearse", "stop_loss"):
        del meta["config"][key]
    again = _elder(tiny("llama"), iterations=1)
    again.load_state(tensors, meta)
    enc = _prompts(editor, records)
    assert torch.equal(again.forward(enc).logits, editor.forward(enc).logits)


def test_each_edit_also_trains_after_context_prefixes_sampled_once_per_stream():
    editor = _elder(tiny("llama"), iterations=1, prefixes=2)
    records = _records(8)
    seen = _trained_rows(editor, records)
    prefixes = editor.context_prefixes
    assert len(prefixes) == 2 and all(p.strip() for p in prefixes)
    for batch, rows in zip((records[:4], records[4:]), seen, strict=True):
        assert rows == [r.prompt for r in batch] + [
            f"{p}. {r.prompt}" for r in batch for p in prefixes
        ]  # the same two prefixes for both batches
    assert editor.state()[1]["context_prefixes"] == prefixes


def test_a_prefixed_row_keeps_its_edits_allocation_label_even_without_a_fact():
    from dataclasses import replace

    editor = _elder(tiny("llama"), iterations=1, prefixes=2)
    batch = [replace(r, fact="") for r in _records(2)]
    editor.edit(batch)
    rows = editor._in_contexts(batch)
    assert [editor.label_of(r) for r in rows] == [editor.label_of(r) for r in batch for _ in "ab"]


def test_a_state_saved_with_stored_texts_refuses_an_editor_without_them():
    editor = _elder(tiny("llama"), **MEMORY, rehearse=2)
    editor.edit(_records(4))
    tensors, meta = editor.state()
    with pytest.raises(ValueError, match="rehearse=2 \\(here 0\\)"):
        _elder(tiny("llama"), **MEMORY).load_state(tensors, meta)


def test_padding_cannot_leak_into_the_mean_query():
    h = torch.randn(1, 4, 3)
    h[0, 3] = float("nan")  # a padded position
    mask = torch.tensor([[1, 1, 1, 0]])
    got = pool(h, mask, torch.tensor([2]), "mean")
    torch.testing.assert_close(got, h[0, 1:3].mean(0, keepdim=True))
