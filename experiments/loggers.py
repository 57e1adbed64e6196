"""Experiment loggers: W&B (offline by default) or none."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class NullLogger:
    """Logs nothing."""

    def start(self, run_id: str, run_dir: Path, config: dict[str, Any]) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        pass


class WandbLogger(NullLogger):
    """Weights & Biases; ``mode=offline`` writes under the run folder and needs no network."""

    def __init__(
        self, project: str = "elder", mode: str = "offline", entity: str | None = None
    ) -> None:
        self.project, self.mode, self.entity = project, mode, entity
        self.run = None

    def start(self, run_id: str, run_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            name=run_id,
            id=run_id,
            dir=str(run_dir),
            config=config,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(summary)
        self.run.finish()
