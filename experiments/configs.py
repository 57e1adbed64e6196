"""The project's Hydra config composed outside ``run.py`` (benches, re-evaluation)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose(overrides: list[str]) -> DictConfig:
    """``conf/config.yaml`` with ``overrides``, as ``python run.py <overrides>`` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)
