"""ROME: k* -> v* exactly, one layer changes, the edit is learned, C is cached, fast = plain."""

import pytest
import torch

import baselines.rome_stats as rome_stats
from baselines.one_layer import weight_out_in
from baselines.rome import ROME
from elder import trunk
from elder.editor import EditRecord
from elder.encoding import encode
from tests.baselines.zsre_helpers import records, target_is_argmax, weights
from tests.conftest import tiny

PREFIXES = ["The weather", "I think", "You know"]  # fixed: no sampling in most tests


def _rome(model, tmp_path, **overrides):
    config = {
        "module": model.layers["rome"]["module"],
        "context_prefixes": PREFIXES,
        "mom2_n_samples": 16,
        "stats_dir": str(tmp_path),
        **overrides,
    }
    return ROME(model, **config)


def test_edit_is_learned_in_the_configured_layer_only_and_state_rebuilds_it(tiny_model, tmp_path):
    # The subject ends the prompt: δ then sits where the target is predicted, which a random
    # tiny model needs (its attention spreads a δ elsewhere thin).
    record = EditRecord(
        "Tell me about Danielle Darrieux", "Paris", "r", "l", "t", "Danielle Darrieux"
    )
    before = weights(tiny_model)
    # A random tiny model has a tiny ‖m‖: the weight decay ‖δ‖/‖m‖² would pin δ at 0 and the
    # norm bound would keep it small, so both are lifted; the bare prompt only, so k* is exactly
    # the key of the evaluated prompt.
    editor = _rome(
        tiny_model,
        tmp_path,
        context_prefixes=[],
        clamp_norm_factor=1e4,
        v_weight_decay=0.0,
        v_num_grad_steps=40,
    )
    editor.edit([record])
    assert target_is_argmax(editor, record)
    after = tiny_model.hf.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(after[k], v)}
    assert changed == {f"{editor.module}.weight"}
    assert editor.extra_params() == after[f"{editor.module}.weight"].numel()

    tensors, meta = editor.state()
    arch = "gpt2" if "transformer" in editor.module else "llama"
    rebuilt = _rome(fresh := tiny(arch), tmp_path)
    rebuilt.load_state(tensors, meta)
    enc = encode(fresh.tokenizer, [record.prompt], [record.target])
    torch.testing.assert_close(rebuilt.forward(enc).logits, editor.forward(enc).logits)


def test_updated_layer_maps_k_star_to_v_star_with_generated_prefixes(tmp_path):
    model = tiny("llama")
    editor = _rome(model, tmp_path, context_prefixes=None, prefix_lengths=[[3, 2]])
    enc, lookups = editor._rows(records(1)[0])
    assert len(editor.context_prefixes) == 2  # sampled from the model, then kept
    k_star = editor.compute_k_star(enc, lookups)
    u = editor.compute_u(k_star)
    v_star, _ = editor.compute_v(enc, lookups)
    assert not torch.allclose(editor.layer(k_star), v_star, atol=1e-3)
    editor.apply_update(k_star, u, v_star)
    torch.testing.assert_close(editor.layer(k_star), v_star, rtol=1e-4, atol=1e-4)
    # The direction of the update is C⁻¹k*, with C read from the cache.
    delta = weight_out_in(editor.layer) - editor.W0  # (out, in), rank one
    c_inv_k = editor.inverse_covariance().float() @ k_star
    row = delta[delta.norm(dim=1).argmax()]
    cos = torch.nn.functional.cosine_similarity(row, c_inv_k, dim=0)
    assert cos.abs() > 0.999


def test_covariance_is_cached_on_disk_and_identity_is_an_option(tmp_path, monkeypatch):
    model = tiny("llama")
    record = records(1)[0]
    first = _rome(model, tmp_path)
    c_inv = first.inverse_covariance()
    assert list(tmp_path.rglob("*.safetensors"))

    def recompute(*args, **kwargs):
        raise AssertionError("the cached C should have been read")

    monkeypatch.setattr(rome_stats, "second_moment", recompute)
    torch.testing.assert_close(_rome(model, tmp_path).inverse_covariance(), c_inv)

    plain = _rome(model, tmp_path, mom2_adjustment=False)
    enc, lookups = plain._rows(record)
    k_star = plain.compute_k_star(enc, lookups)
    torch.testing.assert_close(plain.compute_u(k_star), k_star / k_star.norm())


def test_a_subject_missing_from_its_prompt_is_refused_naming_the_record(tmp_path):
    editor = _rome(tiny("llama"), tmp_path)
    record = EditRecord("Who wrote Hamlet?", "Marlowe", "r", "l", "t", subject="Macbeth", case_id=7)
    with pytest.raises(ValueError, match="case_id=7"):
        editor.edit([record])


def test_fast_path_fits_the_same_v_star_running_only_tokens_from_the_subject_on(
    tiny_model, tmp_path
):
    # δ lifted from its bounds so that it moves far: v* then differs from m by a lot.
    bounds = dict(mom2_adjustment=False, v_weight_decay=0.0, clamp_norm_factor=1e4)
    plain = _rome(tiny_model, tmp_path, fast_path=False, **bounds)
    fast = _rome(tiny_model, tmp_path, fast_path=True, **bounds)
    enc, lookups = plain._rows(records(1)[0])
    v_plain, info_plain = plain.compute_v(enc, lookups)
    v_fast, info_fast = fast.compute_v(enc, lookups)
    assert info_plain["delta_ratio"] > 1
    torch.testing.assert_close(v_fast, v_plain, rtol=1e-4, atol=1e-4)
    assert info_fast["nll"] == pytest.approx(info_plain["nll"], rel=1e-4)

    hidden = trunk.block_input(fast.model, fast.start, enc)
    frozen = trunk.freeze_past(fast.model, fast.start, hidden, enc, lookups)
    real = enc.attention_mask.sum(1)  # (rows,)
    assert frozen.hidden.shape[1] == int((real - lookups).sum())  # the live tokens only
    assert frozen.position_ids[0, frozen.first].tolist() == lookups.tolist()
