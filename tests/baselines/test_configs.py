"""Every baseline composes with every model config and runs end to end on a tiny stream."""

import csv

import pytest
from hydra.utils import get_class

from experiments.runner import run
from tests.conftest import CONF, compose_cfg

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# method -> overrides that make a tiny end-to-end run fast
FAST = {
    "alphaedit": [
        "method.v_num_grad_steps=2",
        "method.context_prefixes=[The weather]",
        "method.mom2_n_samples=8",
    ],
    "grace": ["method.iterations=2"],
    "defer": ["method.iterations=2"],
    "serac": ["method.classifier_steps=2", "method.counterfactual_steps=1", "method.train_size=4"],
    "melo": ["method.iterations=2"],
    "lemoe": ["method.iterations=2"],
    "lora": ["method.iterations=2"],
    "ft_l": ["method.iterations=2"],
    "wise": ["method.n_iter=2"],
    "t_patcher": ["method.max_steps=2", "method.memory_size=8"],
    "wilke": [
        "method.v_num_grad_steps=2",
        "method.context_prefixes=[The weather]",
        "method.mom2_n_samples=8",
    ],
    "rome": [
        "method.v_num_grad_steps=2",
        "method.context_prefixes=[The weather]",
        "method.mom2_n_samples=8",
    ],
}


@pytest.mark.parametrize("method", FAST)
@pytest.mark.parametrize("model", MODELS)
def test_method_composes_with_every_model(method, model):
    cfg = compose_cfg(f"method={method}", f"model={model}")
    assert get_class(cfg.method._target_).name == method
    # the interpolated layers resolve to module names inside the model's blocks
    for key, value in cfg.method.items():
        if "module" in key:
            names = [value] if isinstance(value, str) else list(value)
            assert names and all(n.startswith(cfg.model.blocks + ".") for n in names), key


def test_flat_keys_are_overridable():
    cfg = compose_cfg("method=rome", "method.mom2_adjustment=false", "method.v_lr=0.1")
    assert cfg.method.mom2_adjustment is False and cfg.method.v_lr == 0.1


@pytest.mark.parametrize("method", FAST)
def test_runner_writes_a_row_for_a_tiny_stream(method, tmp_path):
    cfg = compose_cfg(
        f"method={method}",
        "model=tiny_llama",
        "data.n_edits=4",
        "data.batch_size=2",
        "logger=none",
        f"results_dir={tmp_path}",
        *(
            ["method.stats_dir=" + str(tmp_path / "cache")]
            if method in ("rome", "alphaedit", "wilke")
            else []
        ),
        *FAST[method],
    )
    row = run(cfg)
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == [method] and row["n_edits"] == 4
    assert int(rows[0]["extra_params"]) > 0
