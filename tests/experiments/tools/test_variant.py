"""A saved run evaluated again with another inference-time option, as a new run."""

import csv
import json
import shlex

import pytest
import torch
from omegaconf import OmegaConf

from experiments.runner import run
from experiments.tools.variant import derive
from tests.conftest import compose_cfg

SOURCE = [
    "model=tiny_llama",
    "data.n_edits=4",
    "method.iterations=2",
    "logger=none",
    "save=true",
    "eval=full",
    "eval.retention.n_per_task=1",
    "eval.retention.max_new_tokens_cap=2",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    torch.manual_seed(0)
    run(compose_cfg(*SOURCE, f"results_dir={results}", "run_name=r"))
    return results / "runs" / "r"


def metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_sources_own_eps_reproduces_its_metrics(source):
    eps = OmegaConf.load(source / "config.yaml").method.eps
    row = derive(source, [f"method.eps={eps}"], name="same_eps")
    for column in ["reliability", "generalization", "locality", "retention", "agreement"]:
        assert row[column] == metrics(source)[column], column


def test_eps_0_defers_every_input_to_the_unedited_model(source):
    before = metrics(source)
    row = derive(source, ["method.eps=0"])
    assert row["run_id"] == "r_eps0" and row["derived_from"] == "r"
    assert "method.eps=0" in shlex.split(row["overrides"])
    assert row["deferred_edit"] == row["deferred_tasks"] == 1.0
    assert row["locality"] == row["agreement"] == 1.0
    assert row["reliability"] == row["base_reliability"]
    assert row["s_per_edit"] == before["s_per_edit"]  # the editing is the source's
    assert metrics(source) == before  # the source run is left as it was
    with open(source.parent.parent / "runs.csv") as f:
        assert [r["run_id"] for r in csv.DictReader(f)][-1] == "r_eps0"


def test_an_option_that_changes_training_is_refused_before_any_work(source):
    with pytest.raises(ValueError, match=r"lr change what edit\(\) trains.*: eps"):
        derive(source, ["method.lr=1"])
    assert not (source.parent / "r_lr1").exists()
