"""Every model x data x method x eval config composes, and unknown keys are refused."""

import itertools
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_cfg


def _choices(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "model, data, method",
    list(itertools.product(_choices("model"), _choices("data"), _choices("method"))),
)
def test_every_model_data_method_composes(model, data, method):
    cfg = compose_cfg(f"model={model}", f"data={data}", f"method={method}")
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert resolved["method"]["_target_"]
    assert resolved["model"]["name"] == model


@pytest.mark.parametrize("logger", _choices("logger"))
@pytest.mark.parametrize("evaluation", _choices("eval"))
def test_eval_and_logger_groups_compose(evaluation, logger):
    cfg = compose_cfg(f"eval={evaluation}", f"logger={logger}")
    assert cfg.eval.protocol


def test_the_default_is_elder_on_smollm2_and_zsre_with_the_paper_hyperparameters():
    cfg = compose_cfg()
    assert (cfg.model.name, cfg.data.name, cfg.method._target_) == (
        "smollm2_135m",
        "zsre",
        "elder.ELDER",
    )
    m = cfg.method
    assert (m.r, m.L, m.N, m.k, m.eps, m.lam, m.lr, m.iterations) == (
        8,
        6,
        4,
        2,
        12,
        0.01,
        1e-4,
        50,
    )
    assert (cfg.data.n_edits, cfg.data.batch_size) == (1000, 4)


def test_an_unknown_key_is_refused():
    with pytest.raises(Exception, match="nonexistent"):
        compose_cfg("method.nonexistent=1")


@pytest.mark.parametrize("real", ["gpt2_xl", "llama2_7b"])
def test_a_random_weight_stand_in_has_the_real_models_layers_and_needs_no_download(real):
    stand_in, model = compose_cfg(f"model={real}_random").model, compose_cfg(f"model={real}").model
    assert stand_in.source == "tiny" and model.source == "hub"
    assert (stand_in.blocks, stand_in.layers) == (model.blocks, model.layers)
