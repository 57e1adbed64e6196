"""A cell's value: the latest matching row per seed, then the mean over seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from experiments.tables.render import MISSING, Num, Table
from experiments.tables.runs import Row, Runs, Spec


@dataclass(frozen=True)
class Agg:
    """The mean of one metric over seeds, and the runs (rows of ``Runs.frame``) it came from."""

    mean: float
    std: float
    n: int
    rows: tuple[int, ...]  # index labels


def aggregate(runs: Runs, spec: Spec, metric: str) -> Agg | None:
    """The metric over the spec's runs; None when no run has a value for it."""
    latest = runs.select(spec, latest=True)
    if metric not in latest:
        return None
    values = pd.to_numeric(latest[metric], errors="coerce").dropna()
    if values.empty:
        return None
    std = float(values.std()) if len(values) > 1 else 0.0  # sample std, as statistics.stdev
    return Agg(float(values.mean()), std, len(values), tuple(values.index))


def retention_note(row: Row) -> str:
    """Which task inputs a retention run used (runs on different subsamples don't compare)."""
    n = row.get("n_per_task")
    return f"n_per_task={n}" if n is not None else "full task sets"


@dataclass
class Collector:
    """Fills cells from runs; remembers each present cell's runs and each missing command."""

    source: Runs
    runs: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def agg(self, spec: Spec, metric: str, note: Callable[[Row], str] | None = None) -> Agg | None:
        """The aggregate, recorded in the Runs (with ``note(row)``) or the Missing list."""
        agg = aggregate(self.source, spec, metric)
        if agg is None:
            self.missing.setdefault(spec.label(), spec.command())
            return None
        ids = self.runs.setdefault(spec.label(), [])
        if note is None and spec.full:
            note = retention_note
        for row in (self.source.frame.loc[i].to_dict() for i in agg.rows):
            entry = row["run_id"] + (f" ({note(row)})" if note else "")
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

    def table(self, **fields: object) -> Table:
        """A :class:`Table` of these cells: its Runs and Missing lists are the collector's."""
        return Table(**fields, runs=self.runs, missing=self.missing)
