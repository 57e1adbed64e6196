"""Checks that fail early with one clear message instead of a traceback deep in a run."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from experiments.schema import check_method


class NonFiniteLoss(ValueError):
    """Training produced a NaN or infinite statistic: the run stops."""


def check_options(cfg: DictConfig) -> None:
    """Value ranges, checked before any model is loaded (the schemas have checked the types)."""
    every = cfg.checkpoint.every
    checks = [
        (every >= 0, f"checkpoint.every must be an integer >= 0 (0 = off), got {every!r}"),
        (
            cfg.eval.batch_size >= 1,
            f"eval.batch_size must be an integer >= 1, got {cfg.eval.batch_size!r}",
        ),
        (
            cfg.eval.get("every") is None or cfg.eval.every >= 1,
            f"eval.every must be a number of edits >= 1 or null, got {cfg.eval.get('every')}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    check_method(cfg.method)  # the method's own checks, e.g. ELDER's k <= N


def check_finite(stats: dict[str, float], batch: int, last_checkpoint: int, run_dir: Any) -> None:
    """Stop the run when batch ``batch``'s (1-based) training statistics are NaN or infinite."""
    bad = {k: v for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        kept = (
            f"the last good checkpoint (after batch {last_checkpoint}) is kept in {run_dir}"
            if last_checkpoint
            else "no checkpoint was written yet"
        )
        raise NonFiniteLoss(
            f"edit batch {batch}: {shown}; the run stops (try a lower learning rate); {kept}"
        )
