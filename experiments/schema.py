"""The schema of every config group, stored in Hydra's ConfigStore.

Each YAML file names its schema in its ``defaults`` (``- <name>_schema``), so Hydra checks
types and keys while it composes, before any model loads: ``method.k=2.0`` or
``method.N=four`` stop there, as does a key the schema does not have. A method's schema is its
editor's :attr:`~elder.editor.Editor.config_class` plus ``_target_``; value ranges are that
dataclass's own ``__post_init__`` checks (:func:`check_method`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import MISSING, DictConfig, OmegaConf

from baselines.registry import EDITORS
from elder.editor import Editor


@dataclass
class CheckpointConfig:
    every: int = 25  # batches between checkpoints (0 = off)


@dataclass
class RetentionConfig:
    """The arguments of :class:`experiments.retention.RetentionEvaluator` (``eval=full``)."""

    _target_: str = "experiments.retention.RetentionEvaluator"
    tasks: list[str] = MISSING
    variants: list[str] = field(default_factory=list)
    n_per_task: int | None = None
    sample_seed: int = 0
    batch_size: int = 32
    max_padding: float | None = 0.1
    cache_dir: str | None = None
    max_new_tokens_cap: int | None = None


@dataclass
class EvalConfig:
    protocol: str = MISSING
    batch_size: int = 32
    base_cache_dir: str | None = None
    free_decoding: bool = False
    immediate: bool = False
    every: int | None = None
    # Unset (???, so "retention" in cfg.eval is False): no retention; eval=full sets it.
    retention: Any = MISSING


@dataclass
class NullLoggerConfig:
    _target_: str = "experiments.loggers.NullLogger"


@dataclass
class WandbLoggerConfig:
    """The arguments of :class:`experiments.loggers.WandbLogger`."""

    _target_: str = "experiments.loggers.WandbLogger"
    project: str = "elder"
    mode: str = "offline"
    entity: str | None = None


@dataclass
class RunConfig:
    model: Any = MISSING
    data: Any = MISSING
    method: Any = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: Any = MISSING
    seed: int = 0
    results_dir: str = "results"
    run_name: str | None = None
    save: bool = False
    resume: str | None = None
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


@dataclass
class ModelConfig:
    """The arguments of :func:`elder.models.load_model`, and where each method goes."""

    _target_: str = "elder.models.load_model"
    name: str = MISSING
    source: str = MISSING
    path: str = MISSING
    blocks: str = MISSING
    position_embedding: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False
    arch: str | None = None
    config: dict[str, Any] | None = None
    layers: dict[str, Any] = field(default_factory=dict)  # method -> its modules


@dataclass
class DataConfig:
    """The arguments of :func:`experiments.data.load_stream` that every reader takes."""

    _target_: str = "experiments.data.load_stream"
    name: str = MISSING
    path: Any = MISSING  # one file, or a list of files
    n_edits: int = MISSING
    batch_size: int = 4


@dataclass
class ShuffledDataConfig(DataConfig):
    shuffle_seed: int | None = 42  # null keeps the file's order


@dataclass
class ZsreBalancedConfig(ShuffledDataConfig):
    max_rephrases: int = 16
    n_locality: int = 1000


def method_schema(editor: type[Editor]) -> type:
    """``editor.config_class`` with ``_target_`` naming the editor."""
    target = f"{editor.__module__}.{editor.__qualname__}"
    return make_dataclass(
        f"{editor.config_class.__name__}Schema",
        [("_target_", str, field(default=target))],
        bases=(editor.config_class,),
    )


def register() -> None:
    """Store every schema (idempotent): ``python run.py`` and :func:`compose` call it."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=RunConfig)
    store.store(group="eval", name="retention_schema", node=RetentionConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="data", name="shuffled_data_schema", node=ShuffledDataConfig)
    store.store(group="data", name="zsre_balanced_schema", node=ZsreBalancedConfig)
    store.store(group="logger", name="none_schema", node=NullLoggerConfig)
    store.store(group="logger", name="wandb_schema", node=WandbLoggerConfig)
    for name, editor in EDITORS.items():
        store.store(group="method", name=f"{name}_schema", node=method_schema(editor))


def check_method(node: DictConfig) -> None:
    """Build the method's config dataclass from ``node``: its range checks run, no model needed.

    Raises ``ValueError`` as the dataclass's ``__post_init__`` does.
    """
    values = OmegaConf.to_container(node, resolve=True)
    get_class(values.pop("_target_")).config_class(**values)
