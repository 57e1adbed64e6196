"""A cell's value: the latest matching row per seed, then the mean over seeds."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from experiments.tables.render import MISSING, Num
from experiments.tables.runs import Row, Spec, number, parse_overrides, retention_meta


@dataclass(frozen=True)
class Agg:
    """The mean of one metric over seeds, and where it came from."""

    mean: float
    std: float
    n: int
    run_ids: tuple[str, ...]


def latest_per_seed(rows: list[Row]) -> list[Row]:
    """For each seed the latest row (by timestamp, then by position in the file)."""
    best: dict[str, tuple[tuple[str, int], Row]] = {}
    for i, row in enumerate(rows):
        key = (row.get("timestamp", ""), i)
        seed = row.get("seed", "")
        if seed not in best or key > best[seed][0]:
            best[seed] = (key, row)
    return [row for _, row in sorted(best.values(), key=lambda kv: kv[1].get("seed", ""))]


def aggregate(rows: list[Row], spec: Spec, metric: str, runs_dir: Path | None = None) -> Agg | None:
    """The metric over the spec's runs; None when no run has a value for it."""
    matching = latest_per_seed([r for r in rows if spec.matches(r, runs_dir)])
    pairs = [(r, number(r, metric)) for r in matching]
    pairs = [(r, v) for r, v in pairs if v is not None]
    if not pairs:
        return None
    values = [v for _, v in pairs]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Agg(statistics.fmean(values), std, len(values), tuple(r["run_id"] for r, _ in pairs))


def retention_note(row: Row, runs_dir: Path | None = None) -> str:
    """Which task inputs a retention run used (runs on different subsamples don't compare).

    Read from the run folder's ``retention.json`` where there is one (a resumed or
    re-evaluated run's overrides may not name it), else from the row's overrides.
    """
    meta = retention_meta(row, runs_dir)
    if "n_per_task" in meta:
        n = meta["n_per_task"]
    else:
        n = parse_overrides(row.get("overrides", "")).get("eval.retention.n_per_task")
    return f"n_per_task={n}" if n not in (None, "null") else "full task sets"


@dataclass
class Collector:
    """Fills cells from rows; remembers each present cell's runs and each missing command."""

    rows: list[Row]
    runs_dir: Path | None = None
    runs: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def agg(self, spec: Spec, metric: str, note: Callable[[Row], str] | None = None) -> Agg | None:
        """The aggregate, recorded in the Runs (with ``note(row)``) or the Missing list."""
        agg = aggregate(self.rows, spec, metric, self.runs_dir)
        if agg is None:
            self.missing.setdefault(spec.label(), spec.command())
            return None
        ids = self.runs.setdefault(spec.label(), [])
        by_id = {r.get("run_id"): r for r in self.rows}
        if note is None and spec.full:
            note = functools.partial(retention_note, runs_dir=self.runs_dir)
        for run_id in agg.run_ids:
            entry = run_id + (f" ({note(by_id.get(run_id, {}))})" if note else "")
            if entry not in ids:
                ids.append(entry)
        return agg

    def cell(
        self,
        spec: Spec,
        metric: str,
        scale: float = 100.0,
        digits: int = 2,
        note: Callable[[Row], str] | None = None,
    ) -> Num | str:
        """The cell as a number (``scale``: 100 for fractions shown as %), or ``MISSING``."""
        agg = self.agg(spec, metric, note)
        if agg is None:
            return MISSING
        return Num(agg.mean * scale, agg.std * scale, agg.n, digits)
