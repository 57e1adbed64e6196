"""The one-command presets (``conf/preset/``) compose with every model and run end to end."""

import csv

import pytest

from experiments.runner import run
from tests.baselines.test_configs import MODELS
from tests.conftest import compose_cfg


@pytest.mark.parametrize("model", MODELS)
def test_elder_plus_composes_with_every_model(model):
    cfg = compose_cfg("+preset=elder_plus", f"model={model}")
    method = cfg.method
    assert method.route == "memory" and method.query_pool == "mean"
    assert method.protect == "null_space" and method.rehearse == 0  # no edit text stored
    assert method.query_block == cfg.model.layers.elder.memory_query_block
    assert 0 <= method.query_block <= method.first_layer


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_elder_plus_runs_end_to_end_on_a_tiny_model(arch, tmp_path):
    cfg = compose_cfg(
        "+preset=elder_plus",
        f"model=tiny_{arch}",
        "data.n_edits=8",
        "method.iterations=2",
        "logger=none",
        f"results_dir={tmp_path}",
    )
    row = run(cfg)
    with open(tmp_path / "runs.csv") as f:
        [written] = list(csv.DictReader(f))
    assert written["method"] == "elder" and row["n_edits"] == 8
    assert float(written["deferred_locality"]) >= 0  # the deferral rates are reported
