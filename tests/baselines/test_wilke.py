"""WilKE: each edit is ROME's update at the candidate with the smallest relative change."""

import pytest
import torch

from baselines.one_layer import weight_out_in
from baselines.wilke import WilKE
from elder.editor import EditRecord
from tests.baselines.zsre_helpers import weights
from tests.conftest import tiny

RECORD = EditRecord("Tell me about Danielle Darrieux", "Paris", "r", "l", "t", "Danielle Darrieux")


def _wilke(model, **overrides):
    config = {
        "modules": model.layers["wilke"]["modules"],
        "context_prefixes": ["The weather", "I think"],
        "mom2_adjustment": False,
        "v_num_grad_steps": 5,
        **overrides,
    }
    return WilKE(model, **config)


def test_an_edit_writes_the_trial_update_of_the_candidate_with_the_smallest_la(tiny_model):
    editor = _wilke(tiny_model)
    editor.prepare()
    best, trials = editor.scan(RECORD)
    las = [info["la"] for _, info in trials]
    assert best == las.index(min(las)) and len(set(las)) == len(las)  # a real choice
    before = weights(tiny_model)
    editor.edit([RECORD])
    after = tiny_model.hf.state_dict()
    chosen = editor.romes[best]
    changed = {k for k, v in before.items() if not torch.equal(after[k], v)}
    assert changed == {f"{chosen.module}.weight"} and editor.chosen == [best]
    torch.testing.assert_close(
        weight_out_in(chosen.layer) - chosen.W0, trials[best][0].to(chosen.W0), rtol=0, atol=1e-6
    )


def test_la_is_the_same_when_a_candidate_is_rescaled_without_changing_the_model():
    # W_out ×10 and the FFN's up projection ÷10 leave every output as it was: the keys shrink
    # tenfold, so ROME's ΔW grows tenfold, as ‖W‖ does. The relative change, and the choice,
    # stay the same.
    plain = _wilke(tiny("llama"))
    plain.prepare()
    best, trials = plain.scan(RECORD)
    rescaled_model = tiny("llama")
    mlp = rescaled_model.hf.model.layers[2].mlp
    with torch.no_grad():
        mlp.down_proj.weight.mul_(10.0)
        mlp.up_proj.weight.div_(10.0)
    rescaled = _wilke(rescaled_model)
    rescaled.prepare()
    best_rescaled, trials_rescaled = rescaled.scan(RECORD)
    assert best_rescaled == best
    for (_, a), (_, b) in zip(trials, trials_rescaled, strict=True):
        assert b["la"] == pytest.approx(a["la"], rel=1e-3)


def test_each_edit_records_its_layer_and_state_rebuilds_the_edited_model():
    model = tiny("llama")
    editor = _wilke(model)
    records = [
        EditRecord(f"Tell me about {s}", t, "r", "l", "t", s)
        for s, t in (("Danielle Darrieux", "Paris"), ("Edwin Hubble", "Rome"), ("Toko", "Oslo"))
    ]
    editor.edit(records)
    assert len(editor.chosen) == 3
    tensors, meta = editor.state()
    assert set(tensors) == {f"{editor.romes[i].module}.weight" for i in set(editor.chosen)}
    rebuilt = _wilke(fresh := tiny("llama"))
    rebuilt.load_state(tensors, meta)
    assert rebuilt.chosen == editor.chosen
    for name, value in model.hf.state_dict().items():
        assert torch.equal(fresh.hf.state_dict()[name], value), name


def test_no_candidate_layer_is_refused():
    with pytest.raises(ValueError, match="modules"):
        _wilke(tiny("llama"), modules=[])
