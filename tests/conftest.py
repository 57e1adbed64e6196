"""Shared fixtures: tiny models with the real module names, and the data the tests read."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from experiments.configs import compose
from tests import fixture_data

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# The real data where $ELDER_DATA_DIR names it (CI, `make test` beside ../shared); else files
# the tests write themselves (tests/fixture_data.py), so that a fresh clone needs nothing else.
FIXTURE_DATA = not os.environ.get("ELDER_DATA_DIR")
if FIXTURE_DATA:
    _fixtures = Path(tempfile.mkdtemp(prefix="elder-test-data-"))
    atexit.register(shutil.rmtree, _fixtures, ignore_errors=True)
    os.environ["ELDER_DATA_DIR"] = str(fixture_data.write(_fixtures / "data"))
os.environ["ELDER_DATA_MIRROR"] = "http://127.0.0.1:9"  # a test never downloads (port: closed)
os.environ.setdefault("WANDB_MODE", "offline")
real_data = pytest.mark.skipif(FIXTURE_DATA, reason="needs the real data files: $ELDER_DATA_DIR")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def compose_cfg(*overrides: str):
    """The run config that `python run.py <overrides>` would see."""
    return compose(overrides)


def tiny(arch: str = "llama"):
    """A fresh tiny model (same module names as LLaMA2 / GPT2-XL), deterministic weights."""
    torch.manual_seed(0)
    return instantiate(compose_cfg(f"model=tiny_{arch}").model)


@pytest.fixture(params=["llama", "gpt2"])
def tiny_model(request):
    return tiny(request.param)
