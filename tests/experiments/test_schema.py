"""Typed configs: every group has a schema; bad types and unknown keys stop while composing."""

import os
import subprocess
import sys
import time

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from baselines.registry import EDITORS
from tests.conftest import CONF, ROOT, compose_cfg


@pytest.mark.parametrize(
    "override",
    ["method.k=2.0", "method.k=true", "method.N=four", "method=grace method.iterations=1.5",
     "method=lora method.modules=3", "data.n_edits=many", "eval.batch_size=1.5", "save=maybe"],
)  # fmt: skip
def test_a_value_of_the_wrong_type_is_refused_while_composing(override):
    with pytest.raises(ConfigCompositionException, match="Error merging override") as err:
        compose_cfg(*override.split())
    assert isinstance(err.value.__cause__, ValidationError)


@pytest.mark.parametrize("key", ["method.kk=2", "data.n_edit=4", "eval.batchsize=8", "seeds=1"])
def test_an_unknown_key_is_refused_while_composing(key):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(key)


@pytest.mark.parametrize("logger", ["wandb", "none"])
def test_a_loggers_unknown_key_is_refused_while_composing(logger):
    with pytest.raises(ConfigCompositionException, match="logger.projct"):
        compose_cfg(f"logger={logger}", "logger.projct=elder")


@pytest.mark.parametrize("override", ["method.k=2.0", "method.k=true", "method.N=four"])
def test_run_py_refuses_a_bad_type_in_one_line_before_any_model_loads(override):
    # Model and data point nowhere: had composition passed, the run would fail on those.
    args = [override, "logger=none", "data.path=/nonexistent.json", "model.path=no/model.gguf"]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env={**os.environ, "ELDER_TRACEBACK": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - start
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: Error merging override {override}: Value ")
    # Imports only (torch, transformers): well under the time a model load and a base eval take.
    assert seconds < 120


def test_every_method_config_names_its_schema_and_every_editor_has_a_config():
    for name, editor in EDITORS.items():
        config = yaml.safe_load((CONF / "method" / f"{name}.yaml").read_text())
        assert config["defaults"][0] == f"{name}_schema"
        assert config["_target_"] == f"{editor.__module__}.{editor.__name__}".replace(
            "elder.method.", "elder."
        )
    assert sorted(p.stem for p in (CONF / "method").glob("*.yaml")) == sorted(EDITORS)


@pytest.mark.parametrize("method", sorted(EDITORS))
def test_the_method_schema_holds_the_config_dataclass_fields(method):
    cfg = compose_cfg(f"method={method}")
    fields = set(EDITORS[method].config_class.__dataclass_fields__)
    assert set(cfg.method) == fields | {"_target_"}


def test_out_of_range_method_values_fail_before_the_model_loads(monkeypatch):
    from experiments.runner import run

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("elder.models.load_model", no_model)
    with pytest.raises(ValueError, match=r"k must be in \[1, N=4\], got k=5"):
        run(compose_cfg("method.k=5", "logger=none", "model=tiny_llama"))
