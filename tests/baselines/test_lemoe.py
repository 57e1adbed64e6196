"""LEMoE on tiny models: inserted experts, frozen earlier experts, routing, order planning."""

import copy

import torch

from baselines.lemoe import LEMoE
from elder.encoding import encode
from tests.baselines.helpers import argmax_hits, base_params_unchanged, records
from tests.conftest import tiny


def _lemoe(model, **overrides):
    return LEMoE(model, module=model.layers["lemoe"]["module"], **overrides)


def test_batches_become_the_argmax_and_leave_earlier_experts_bit_identical(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.hf.named_parameters()}
    editor = _lemoe(tiny_model, iterations=20, lr=1e-2)
    batch = records(4)
    editor.edit(batch[:2])
    assert argmax_hits(editor, batch[:2]).all()
    frozen = [
        p.clone() for p in (*editor.layer.lora_A, *editor.layer.lora_B, *editor.router.parameters())
    ]
    editor.edit(batch[2:])
    assert argmax_hits(editor, batch[2:]).all()
    old = (
        editor.layer.lora_A[0],
        editor.layer.lora_B[0],
        editor.router.down[0],
        editor.router.up[0],
        editor.router.keys[0],
    )
    for p, q in zip(frozen, old, strict=False):
        assert torch.equal(p, q)
    assert editor.n_experts == 2
    base_params_unchanged(tiny_model, before)
    enc = encode(tiny_model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    assert editor.forward(enc).info["expert"].tolist() == [0, 0, 1, 1]  # routes kept


def test_stop_loss_ends_a_batch_early_and_without_it_every_iteration_runs(tiny_model):
    batch = records(2)
    start = _lemoe(copy.deepcopy(tiny_model), iterations=1).edit(batch)["loss"]  # before updates
    full = _lemoe(copy.deepcopy(tiny_model), iterations=60, lr=1e-2).edit(batch)
    halfway = (start + full["loss"]) / 2
    stopped = _lemoe(tiny_model, iterations=60, lr=1e-2, stop_loss=halfway).edit(batch)
    assert full["updates"] == 60
    assert 0 < stopped["updates"] < 60
    assert stopped["loss"] < halfway


def test_kmeans_order_plans_the_buffered_edits_and_state_rebuilds_them():
    model = tiny("llama")
    editor = _lemoe(model, iterations=2, order="kmeans", plan_window=8)
    batch = records(8)
    assert editor.edit(batch[:4]) == {}  # buffered
    assert editor.n_experts == 0
    planned = editor.plan(batch)
    assert sorted(r.prompt + r.target for b in planned for r in b) == sorted(
        r.prompt + r.target for r in batch
    ) and all(len(b) == 4 for b in planned)
    editor.edit(batch[4:])  # the window is full: plan and train
    assert editor.n_experts == 2
    tensors, meta = editor.state()
    rebuilt = _lemoe(tiny("llama"), order="kmeans")
    rebuilt.load_state(tensors, meta)
    enc = encode(model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    assert torch.equal(rebuilt.forward(enc).logits, editor.forward(enc).logits)
