"""The routing report of an ELDER run: codes, drift from the stored codes, presets, deferral."""

import math
from dataclasses import replace

import pytest
import torch

from elder.allocation import pack
from experiments.elder_analysis.routing import load_editor, memory_report, report
from experiments.runner import run
from tests.conftest import compose_cfg, tiny
from tests.elder.test_elder import _elder, _records


def _run(tmp_path, *overrides):
    row = run(
        compose_cfg(
            "model=tiny_llama",
            f"results_dir={tmp_path}",
            "method.iterations=2",
            "logger=none",
            *overrides,
        )
    )
    return tmp_path / "runs" / row["run_id"]


def test_a_single_batch_routes_every_edit_to_the_code_stored_for_it(tmp_path):
    # One batch: the codes were stored by the routers as they are now, so nothing drifted.
    run_dir = _run(tmp_path, "data.n_edits=4", "save=true")
    editor, source = load_editor(run_dir, checkpoint=False)
    result = report(editor, _records(4))
    assert source == "saved edits (edited/)"
    assert result["n"] == 4
    assert result["same_as_stored"] == 1.0 and result["hamming_to_stored_mean"] == 0.0
    assert result["deferral"]["edit"] == {
        "deferred": 0.0,
        "hamming_to_nearest": {"min": 0, "median": 0, "max": 0},
    }


def test_a_run_without_saved_edits_is_read_from_its_last_checkpoint(tmp_path):
    run_dir = _run(tmp_path, "data.n_edits=8", "checkpoint.every=1")
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        load_editor(run_dir, checkpoint=False)
    editor, source = load_editor(run_dir, checkpoint=True)
    assert source == "checkpoint step-000002 (2 edit batches)"
    assert len(editor.codes) == 8


def test_routers_that_ignore_their_input_give_the_uniform_guided_loss():
    editor = _elder(tiny("llama"), L=2, N=4, k=2, eps=3)
    for layer in editor.layers:
        torch.nn.init.zeros_(layer.router.weight)  # every score 1/N
    records = _records(3)
    editor.codes = torch.zeros(3, 1, dtype=torch.uint8)  # three stored (empty) codes
    result = report(editor, records)
    assert result["guided_loss_median"] == pytest.approx(2 * 2 * math.log(4), rel=1e-5)
    assert result["guided_loss_uniform"] == pytest.approx(2 * 2 * math.log(4))


def test_usage_and_preset_match_count_the_routers_top_k():
    editor = _elder(tiny("llama"), L=2, N=3, k=1, eps=3)
    fixed = torch.tensor([[0.2, 0.1, 0.7], [0.1, 0.6, 0.3]])  # (L, N): experts 2 and 1 win
    editor.scores = lambda query: fixed.expand(len(query), -1, -1)  # whatever the input
    records = _records(4)
    labels = [editor.label_of(r) for r in records]
    presets = editor.allocations.batch(labels)[:, :, 0]  # (4, L), k=1
    preset_codes = pack(torch.nn.functional.one_hot(presets, 3).flatten(1).bool())  # (4, 1)
    editor.codes = torch.cat([preset_codes[:1], torch.zeros(3, 1, dtype=torch.uint8)])
    result = report(editor, records)
    assert result["stored_preset_match"] == 0.25  # only the first edit was stored with it
    assert result["distinct_codes"] == 1
    assert result["expert_usage"] == [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    expected = (presets == torch.tensor([2, 1])).float()  # (4, L)
    assert result["preset_match_per_layer"] == pytest.approx(expected.mean(0).tolist())
    assert result["preset_match"] == pytest.approx(expected.all(-1).float().mean().item())


def test_a_run_of_another_method_is_refused_before_any_model_is_built(tmp_path):
    (tmp_path / "config.yaml").write_text("method:\n  _target_: baselines.grace.GRACE\n")
    with pytest.raises(ValueError, match="not an ELDER run"):
        load_editor(tmp_path, checkpoint=False)


def _memory_editor(records):
    editor = _elder(
        tiny("llama"), route="memory", query="residual", query_block=1, radius=0.5, iterations=1
    )
    for i in range(0, len(records), 2):
        editor.edit(records[i : i + 2])
    return editor


def test_route_memory_reports_a_rephrase_identical_to_its_edit_as_routed_to_its_own_edit():
    records = [replace(r, rephrase=r.prompt) for r in _records(4)]
    result = memory_report(_memory_editor(records), records, [1.0, 0.0, 1.0, 1.0])
    assert result["n"] == 4
    assert result["own"] == result["same_target"] == result["in_reach"] == 1.0
    assert result["routed"]["own, in reach"] == {"share": 1.0, "generalization": 0.75}
    assert result["routed"]["deferred"]["share"] == 0.0
    assert result["own_by_store_size"] == {4: {"own": 1.0, "own_in_reach": 1.0}}


def test_route_memory_report_splits_edits_by_whether_their_subject_recurs_in_the_stream():
    subjects = "aabc"  # edits 0 and 1 are about one subject
    records = [
        replace(r, rephrase=r.prompt, subject=s) for r, s in zip(_records(4), subjects, strict=True)
    ]
    result = memory_report(_memory_editor(records), records, [1.0, 0.0, 1.0, 1.0])
    assert result["subject"]["shared"] == {"share": 0.5, "generalization": 0.5, "own": 1.0}
    assert result["subject"]["its own"] == {"share": 0.5, "generalization": 1.0, "own": 1.0}
    assert result["routed"]["other about its subject, in reach"]["share"] == 0.0


def test_route_memory_report_gives_own_routed_generalization_per_fifth_of_the_stream():
    records = [replace(r, rephrase=r.prompt) for r in _records(10)]
    exact = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    result = memory_report(_memory_editor(records), records, exact)
    parts = result["own_by_position"]
    assert list(parts) == ["0-2", "2-4", "4-6", "6-8", "8-10"]
    assert [p["generalization"] for p in parts.values()] == [1.0, 0.0, 1.0, 0.5, 0.0]
    assert [p["share"] for p in parts.values()] == pytest.approx([0.2] * 5)


def test_route_memory_report_of_an_editor_that_stored_nothing_is_refused():
    editor = _elder(tiny("llama"), route="memory", query="residual", query_block=1)
    with pytest.raises(ValueError, match="edited nothing"):
        memory_report(editor, _records(2), [0.0, 0.0])
