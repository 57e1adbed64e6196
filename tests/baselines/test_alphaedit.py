"""AlphaEdit: updates live in the null space of the preserved keys, earlier keys accumulate,
the edit is learned, z is fitted after the last layer, its own batch size buffers edits."""

import pytest
import torch

from baselines.alphaedit import AlphaEdit
from baselines.one_layer import weight_out_in
from elder.editor import EditRecord
from tests.baselines.helpers import argmax_hits
from tests.baselines.zsre_helpers import records
from tests.conftest import tiny


def _alphaedit(model, tmp_path, **overrides) -> AlphaEdit:
    config = {
        "modules": model.layers["alphaedit"]["modules"],
        "context_prefixes": ["The weather", "I think"],
        "mom2_n_samples": 16,
        "stats_dir": str(tmp_path),
        **overrides,
    }
    return AlphaEdit(model, **config)


def _preserve(editor: AlphaEdit, rank: int) -> torch.Tensor:
    """Make P the null space of ``rank`` random keys per layer; returns the keys (L, in, rank)."""
    gen = torch.Generator().manual_seed(0)
    d_in = editor.W0[0].shape[1]
    K0 = torch.randn(len(editor.layers), d_in, rank, generator=gen)
    U, _, _ = torch.linalg.svd(K0, full_matrices=True)  # (L, in, in)
    null = U[:, :, rank:]  # orthogonal to every preserved key
    editor._P = null @ null.transpose(1, 2)
    return K0


def test_an_update_leaves_the_preserved_keys_outputs_unchanged(tmp_path):
    model = tiny("llama")
    editor = _alphaedit(model, tmp_path, clamp_norm_factor=1e3, v_weight_decay=0.0)
    K0 = _preserve(editor, rank=64)  # half of the tiny FFN's 128 dims
    before = [layer(K0[i].T).detach() for i, layer in enumerate(editor.layers)]
    editor.edit(records(2))
    for i, layer in enumerate(editor.layers):
        assert not torch.equal(weight_out_in(layer), editor.W0[i])  # the layer did change
        torch.testing.assert_close(layer(K0[i].T), before[i], rtol=0, atol=1e-5)


def test_the_keys_of_every_edited_batch_accumulate_in_cache_c(tmp_path):
    editor = _alphaedit(tiny("llama"), tmp_path)
    editor.edit(records(2))
    first = editor.cache_c.clone()
    K, _ = editor.keys_and_hidden(0, [editor._rows(r) for r in records(2)])
    torch.testing.assert_close(first[0], K @ K.T)  # the keys on the model after its update
    editor.edit(records(4)[2:])
    assert torch.linalg.matrix_rank(editor.cache_c[0].double(), rtol=1e-6) == 4
    assert editor.n_edits == 4


def test_an_edit_is_learned_with_the_whole_space_free(tmp_path):
    # A random tiny model's residual is small: the bounds on δ and the ridge are lifted, and P = I.
    model = tiny("llama")
    editor = _alphaedit(
        model, tmp_path, clamp_norm_factor=1e4, v_weight_decay=0.0, v_num_grad_steps=60,
        L2=1e-6, context_prefixes=[], nullspace_threshold=1e9, v_lr=0.5,
    )  # fmt: skip
    assert editor.null_dims() == [128, 128, 128]
    # The subject ends the prompt: δ then sits where the target is predicted (as in ROME's test).
    batch = [
        EditRecord("Tell me about Danielle Darrieux", "Paris", "r", "l", "t", "Danielle Darrieux")
    ]
    assert not argmax_hits(editor, batch).any()
    editor.edit(batch)
    assert argmax_hits(editor, batch).all()


def test_z_is_the_residual_after_the_last_edited_block_plus_delta(tmp_path):
    model = tiny("gpt2")
    editor = _alphaedit(model, tmp_path)
    enc, lookups = editor._rows(records(1)[0])
    z, info = editor.compute_z(enc, lookups)
    _, H = editor.keys_and_hidden(len(editor.layers) - 1, [(enc, lookups)])
    delta = z - H[:, 0]
    assert delta.norm() > 0
    assert delta.norm() <= 0.75 * H[:, 0].norm() * (1 + 1e-5)  # clamp_norm_factor · ‖h‖
    assert info["delta_ratio"] == pytest.approx((delta.norm() / H[:, 0].norm()).item(), rel=1e-4)


def test_its_own_batch_size_buffers_edits_until_full_and_flush_applies_the_rest(tmp_path):
    editor = _alphaedit(tiny("llama"), tmp_path, batch_size=3, v_num_grad_steps=2)
    assert editor.edit(records(2)) == {} and editor.n_edits == 0
    editor.edit(records(4)[2:])
    assert editor.n_edits == 3 and len(editor.pending) == 1
    editor.flush()
    assert editor.n_edits == 4 and editor.pending == []


def test_state_rebuilds_the_edited_model_and_its_key_memory(tmp_path):
    editor = _alphaedit(tiny("llama"), tmp_path, v_num_grad_steps=3)
    editor.edit(records(2))
    tensors, meta = editor.state()
    rebuilt = _alphaedit(tiny("llama"), tmp_path)
    rebuilt.load_state(tensors, meta)
    torch.testing.assert_close(rebuilt.cache_c, editor.cache_c, rtol=0, atol=0)
    batch = records(2)
    torch.testing.assert_close(argmax_hits(rebuilt, batch), argmax_hits(editor, batch))
    for a, b in zip(rebuilt.layers, editor.layers, strict=True):
        assert torch.equal(a.weight, b.weight)


def test_bad_options_are_refused_before_any_work(tmp_path):
    model = tiny("llama")
    with pytest.raises(ValueError, match="batch_size"):
        _alphaedit(model, tmp_path, batch_size=0)
    modules = model.layers["alphaedit"]["modules"]
    with pytest.raises(ValueError, match="lowest first"):
        _alphaedit(model, tmp_path, modules=list(reversed(modules)))


def test_the_fast_path_fits_the_same_z_running_only_tokens_from_the_subject_on(tmp_path):
    bounds = dict(v_weight_decay=0.0, clamp_norm_factor=1e3, v_num_grad_steps=5)
    plain = _alphaedit(tiny("llama"), tmp_path, fast_path=False, **bounds)
    fast = _alphaedit(tiny("llama"), tmp_path, fast_path=True, **bounds)
    enc, lookups = plain._rows(records(1)[0])
    z_plain, _ = plain.compute_z(enc, lookups)
    z_fast, _ = fast.compute_z(enc, lookups)
    torch.testing.assert_close(z_fast, z_plain, rtol=1e-4, atol=1e-4)
