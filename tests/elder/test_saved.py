"""ELDER's state: saved and loaded exactly, continuing the stream identically; elder.load."""

import json

import pytest
import torch
from omegaconf import OmegaConf

import elder
from elder.encoding import encode
from tests.conftest import compose_cfg, tiny
from tests.elder.test_elder import _elder, _records


def _logits(editor, records):
    enc = encode(editor.model.tokenizer, [r.prompt for r in records], [r.target for r in records])
    return editor.forward(enc).logits


def test_state_round_trip_continues_the_stream_bit_for_bit():
    records = _records(12)
    first = _elder(tiny("llama"), iterations=3, lr=1e-2)
    first.edit(records[:4])
    first.edit(records[4:8])
    tensors, meta = first.state()
    second = _elder(tiny("llama"), iterations=3, lr=1e-2)
    second.load_state({k: v.clone() for k, v in tensors.items()}, meta)
    assert torch.equal(_logits(first, records), _logits(second, records))
    # Adam moments, the allocation generator and the stored codes carry on identically.
    first.edit(records[8:])
    second.edit(records[8:])
    after_first, meta_first = first.state()
    after_second, meta_second = second.state()
    assert meta_first == meta_second
    assert after_first.keys() == after_second.keys()
    for key in after_first:
        assert torch.equal(after_first[key], after_second[key]), key


def test_loading_a_state_into_a_different_structure_names_the_difference():
    tensors, meta = _elder(tiny("llama"), N=4).state()
    with pytest.raises(ValueError, match=r"N=4 \(here 8\)"):
        _elder(tiny("llama"), N=8).load_state(tensors, meta)


def _run_folder(tmp_path, *overrides):
    """A run folder as the runner writes it: config.yaml (resolved) + the saved edits."""
    cfg = compose_cfg("model=tiny_llama", *overrides)
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return cfg


def test_saved_then_loaded_editor_gives_the_edited_logits(tmp_path):
    cfg = _run_folder(tmp_path, "method.iterations=3", "method.lr=1e-2")
    torch.manual_seed(cfg.seed)  # the runner seeds before building the (random) tiny model
    model = elder.load_base(tmp_path)
    editor = _elder(model, iterations=3, lr=1e-2, allocation_seed=cfg.seed)
    records = _records(8)
    editor.edit(records[:4])
    editor.edit(records[4:])
    elder.save(editor, tmp_path / "edited")
    loaded = elder.load(tmp_path)
    assert type(loaded) is type(editor)
    assert torch.equal(_logits(loaded, records), _logits(editor, records))


def test_load_refuses_a_run_folder_that_asks_for_remote_code(tmp_path):
    _run_folder(tmp_path, "model.trust_remote_code=true")
    with pytest.raises(ValueError, match="trust_remote_code"):
        elder.load_base(tmp_path)


def test_load_refuses_a_method_target_that_is_not_an_editor(tmp_path):
    _run_folder(tmp_path, "method._target_=os.system")
    (tmp_path / "edited").mkdir()
    with pytest.raises(ValueError, match="is not an Editor"):
        elder.load(tmp_path)


def test_load_of_a_run_saved_without_edits_says_how_to_save(tmp_path):
    _run_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="save=true"):
        elder.load(tmp_path)


def test_an_optimizer_state_with_a_device_tensor_lr_is_saved_as_plain_json():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], lr=torch.tensor(0.01), foreach=False)
    param.grad = torch.ones(3)
    optimizer.step()
    tensors, meta = elder.saved.optimizer_state(optimizer)
    assert json.loads(json.dumps(meta))["param_groups"][0]["lr"] == pytest.approx(0.01)
    again = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    elder.saved.load_optimizer_state(again, tensors, meta)
    assert again.param_groups[0]["lr"] == pytest.approx(0.01)
