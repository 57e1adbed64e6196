"""Run the retention benchmark again on a finished run's saved edits, without editing again.

    python -m experiments.tools.reevaluate results/runs/<run> [more runs] [--n-per-task 100]

For runs made with ``save=true``: after the retention prompts change (``PROMPT_VERSION``), or
for a run made with ``eval=edit``. The run's unedited model is rebuilt from its
``config.yaml``, its base outputs come from (or go to) the retention cache, its saved edits are
loaded, and the 8 tasks are generated again. The run's row is appended to ``runs.csv`` once
more, its edit metrics unchanged and its retention columns new; ``retention_commit`` and
``retention_timestamp`` say which code produced them (``git_commit`` stays the editing code).
The run folder's ``retention.json(l)`` and ``metrics.json`` are replaced.
"""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from elder.saved import SAVED_DIR, load, load_base, run_config
from experiments.checkpoint import lock_run
from experiments.configs import compose
from experiments.results import finish_run, git_commit
from experiments.runner import build


def retention_config(run_cfg: DictConfig, n_per_task: int | None) -> DictConfig:
    """The run's own ``eval.retention`` (``eval=full``'s for an ``eval=edit`` run)."""
    node = run_cfg.eval.get("retention")
    if node is None:
        node = compose(["eval=full"]).eval.retention
    if n_per_task is not None:
        node.n_per_task = n_per_task
    return node


def reevaluate(run_dir: str | Path, n_per_task: int | None = None) -> dict[str, Any]:
    """The run's ``runs.csv`` row with fresh retention columns (also appended to the CSV)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise FileNotFoundError(f"{run_dir} has not finished (no metrics.json): nothing to redo")
    if not (run_dir / SAVED_DIR).is_dir():
        raise FileNotFoundError(f"{run_dir} has no saved edits ('{SAVED_DIR}/'): save=true")
    run_cfg = run_config(run_dir)
    node = retention_config(run_cfg, n_per_task)
    with lock_run(run_dir):
        model = load_base(run_dir)
        retention = build(node, model=model)  # fingerprints the untouched weights
        retention.prepare()
        editor = load(run_dir, model=model)
        result = retention.evaluate(editor, run_dir)
        row = json.loads(metrics.read_text())
        overrides = row.get("overrides", "")
        if run_cfg.eval.get("retention") is None:
            overrides = f"{overrides} eval=full".strip()
        if n_per_task is not None:
            kept = [
                o for o in shlex.split(overrides) if not o.startswith("eval.retention.n_per_task=")
            ]
            overrides = shlex.join([*kept, f"eval.retention.n_per_task={n_per_task}"])
        row.update({k: round(v, 6) for k, v in result.items()})
        row["overrides"] = overrides
        row["retention_commit"] = git_commit()
        row["retention_timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        row["timestamp"] = row["retention_timestamp"]  # a run's latest row is the one tables use
        finish_run(run_dir, run_cfg.results_dir, row, predictions=None)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders made with save=true")
    parser.add_argument("--n-per-task", type=int, help="task inputs per task (default: the run's)")
    args = parser.parse_args()
    for run_dir in args.runs:
        row = reevaluate(run_dir, args.n_per_task)
        print(f"{run_dir}: retention {row['retention']:.4f}, agreement {row['agreement']:.4f}")


if __name__ == "__main__":
    main()
