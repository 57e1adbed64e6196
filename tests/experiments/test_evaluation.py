"""The unedited model's predictions are cached across runs; curves of reliability over edits."""

import json

import pytest

from experiments import evaluation
from experiments.evaluation import Curve
from experiments.runner import run
from tests.conftest import compose_cfg

FAST = ("model=tiny_llama", "method.iterations=2", "logger=none", "eval.batch_size=8")


def test_a_second_run_reads_the_unedited_predictions_from_the_cache(tmp_path, monkeypatch):
    first = run(compose_cfg(f"results_dir={tmp_path}", "data.n_edits=4", *FAST))

    def fail(model):
        raise AssertionError("the unedited model was evaluated again")

    monkeypatch.setattr(evaluation, "base_forward", fail)
    second = run(compose_cfg(f"results_dir={tmp_path}", "data.n_edits=4", "method=lora", *FAST))
    for key in ("base_reliability", "base_generalization", "base_reliability_tok"):
        assert second[key] == first[key]


def test_another_stream_is_not_served_from_the_cache(tmp_path, monkeypatch):
    run(compose_cfg(f"results_dir={tmp_path}", "data.n_edits=4", *FAST))
    calls = []
    real = evaluation.base_forward
    monkeypatch.setattr(evaluation, "base_forward", lambda m: calls.append(1) or real(m))
    run(compose_cfg(f"results_dir={tmp_path}", "data.n_edits=5", *FAST))
    assert calls == [1]


def test_eval_every_writes_a_point_at_each_mark_and_at_the_end(tmp_path):
    row = run(compose_cfg(f"results_dir={tmp_path}", "data.n_edits=10", "eval.every=4", *FAST))
    lines = (tmp_path / "runs" / row["run_id"] / Curve.FILE).read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert [p["edits"] for p in points] == [4, 8, 10]
    assert points[-1]["extra_params"] == row["extra_params"]
    assert points[-1]["reliability"] == pytest.approx(row["reliability"])


def test_a_resumed_curve_drops_the_points_past_the_restored_position(tmp_path):
    curve = Curve(2, tmp_path, model=None, bs=8)
    curve.file.write_text("".join(json.dumps({"edits": n}) + "\n" for n in (2, 4, 6)))
    curve.restore(edits_done=4)
    assert [json.loads(line)["edits"] for line in curve.file.read_text().splitlines()] == [2, 4]


def test_a_non_positive_eval_every_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="eval.every"):
        run(compose_cfg(f"results_dir={tmp_path}", "eval.every=0", *FAST))
    assert not (tmp_path / "runs").exists()
