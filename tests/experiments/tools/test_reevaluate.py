"""Retention computed again from a finished run's saved edits, without editing again."""

import csv

import pytest
import torch

from experiments.runner import run
from experiments.tools.reevaluate import reevaluate
from tests.conftest import compose_cfg

TINY = ["model=tiny_llama", "data.n_edits=4", "method.iterations=2", "logger=none"]
FAST = ["eval.retention.n_per_task=1", "eval.retention.max_new_tokens_cap=2"]


def finished_run(tmp_path, *overrides: str):
    cfg = compose_cfg(*TINY, f"results_dir={tmp_path}", "run_name=r", *overrides)
    torch.manual_seed(0)
    run(cfg)
    return tmp_path / "runs" / "r"


def rows(tmp_path) -> list[dict]:
    with open(tmp_path / "runs.csv") as f:
        return list(csv.DictReader(f))


def test_reevaluation_appends_the_runs_row_with_the_same_scores(tmp_path):
    run_dir = finished_run(tmp_path, "save=true", "eval=full", *FAST)
    reevaluate(run_dir)
    first, again = rows(tmp_path)
    assert first["run_id"] == again["run_id"] == "r"
    for column in ["reliability", "locality", "retention", "agreement", "retention_rte"]:
        assert first[column] == again[column]
    assert again["retention_commit"] and again["timestamp"] >= first["timestamp"]


def test_an_eval_edit_run_gets_the_eval_full_retention_columns(tmp_path):
    run_dir = finished_run(tmp_path, "save=true", "eval.batch_size=4")
    row = reevaluate(run_dir, n_per_task=1)
    assert rows(tmp_path)[0]["retention"] == ""  # the eval=edit row had none
    assert 0.0 <= row["retention"] <= 1.0 and "agreement_gsm8k" in row
    assert row["overrides"].endswith("eval=full eval.retention.n_per_task=1")


def test_a_run_without_saved_edits_is_refused(tmp_path):
    run_dir = finished_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="save=true"):
        reevaluate(run_dir)
