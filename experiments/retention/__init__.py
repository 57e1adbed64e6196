"""Retention on general tasks: the 8-task benchmark of Gu et al. 2024 and agreement with the
unedited model (issue 4). Prompts live in :mod:`prompts`, metrics in :mod:`metrics`."""

from experiments.retention.evaluator import RetentionEvaluator
from experiments.retention.prompts import PROMPT_VERSION
from experiments.retention.tasks import TASKS

__all__ = ["PROMPT_VERSION", "TASKS", "RetentionEvaluator"]
