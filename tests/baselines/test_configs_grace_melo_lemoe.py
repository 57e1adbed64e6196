"""Every baseline composes with every model config and runs end to end through the runner."""

import csv

import pytest

from experiments.runner import run
from tests.conftest import CONF, compose_cfg

METHODS = {"grace": "GRACE", "melo": "MELO", "lemoe": "LEMoE"}
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_method_composes_with_every_model(method, model):
    cfg = compose_cfg(f"method={method}", f"model={model}")
    assert cfg.method._target_ == f"baselines.{method}.{METHODS[method]}"
    # the interpolated layers resolve to strings naming the model's blocks
    layers = {k: v for k, v in cfg.method.items() if "module" in k}
    for value in layers.values():
        names = [value] if isinstance(value, str) else list(value)
        assert all(n.startswith(cfg.model.blocks + ".") for n in names)


@pytest.mark.parametrize(
    "method, overrides",
    [
        ("grace", ["method.iterations=2"]),
        ("melo", ["method.iterations=2"]),
        ("lemoe", ["method.iterations=2"]),
    ],
)
def test_runner_end_to_end_writes_a_row(method, overrides, tmp_path):
    cfg = compose_cfg(
        f"method={method}",
        "model=tiny_llama",
        "logger=none",
        "data.n_edits=4",
        "data.batch_size=2",
        f"results_dir={tmp_path}",
        *overrides,
    )
    row = run(cfg)
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["method"] == method and row["extra_params"] > 0
