"""The project's Hydra config: its schemas registered, composed outside ``run.py`` too."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from experiments import schema

CONF = Path(__file__).resolve().parents[1] / "conf"
schema.register()  # before Hydra composes anything, here or in run.py


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """``conf/config.yaml`` with ``overrides``, as ``python run.py <overrides>`` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
