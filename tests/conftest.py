"""Shared fixtures: tiny models with the real module names, and the shared data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from experiments.configs import compose

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("ELDER_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("WANDB_MODE", "offline")
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
