"""The paper's own numbers (``paper.yaml``), as table cells."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from experiments.tables.render import Num

PAPER_FILE = Path(__file__).with_name("paper.yaml")
NOT_REPORTED = ""  # a paper cell the paper has no number for (not a missing run of ours)


@functools.cache
def paper() -> dict[str, Any]:
    """The whole of ``paper.yaml``."""
    return yaml.safe_load(PAPER_FILE.read_text())


def lookup(*keys: str | int) -> Any:
    """A value under nested keys (list indices allowed); None when the paper has none."""
    node: Any = paper()
    for key in keys:
        in_dict = isinstance(node, dict) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and key < len(node)
        if not (in_dict or in_list):
            return None
        node = node[key]
    return node


def cell(*keys: str | int, digits: int = 2, scale: float = 1.0) -> Num | str:
    """A paper number as a cell (times ``scale``); blank when the paper does not report it."""
    value = lookup(*keys)
    if not isinstance(value, (int, float)):
        return NOT_REPORTED
    return Num(float(value) * scale, digits=digits)


def task_cell(data: str, model: str, method: str, task: str) -> Num | str:
    """A per-task number of Tables 7-10 (``task="avg"`` for the paper's Avg. column)."""
    tasks = lookup("tables7_10", "tasks") or []
    if task not in tasks:
        return NOT_REPORTED
    return cell("tables7_10", data, model, method, tasks.index(task), digits=1)
