"""The runs behind the tables: ``runs.csv`` joined with each run folder's own ``config.yaml``.

A cell is a :class:`Spec`: method, model, data, number of edits and the overrides that make its
variant (``{"method.k": 3}``). A run belongs to the cell when its resolved config agrees with
the config that the spec's own command composes today, with the run's seed, on every key that
decides the result (:func:`deciding`). A key that only one side has is not compared: a config
written before an option existed is upgraded to what the run ran with by
:func:`elder.saved.run_config`, which every reader of a run folder goes through.
"""

from __future__ import annotations

import functools
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from elder.saved import run_config
from experiments.configs import CONF, compose
from experiments.results import read_rows
from experiments.retention.prompts import PROMPT_VERSION
from experiments.tables.names import N_EDITS, name

Row = dict[str, Any]  # one line of runs.csv (strings), with its run's `config`
# Keys that do not decide what a run computes. model.device: where it ran (dtype, in contrast,
# decides); model.layers: its effect shows in the method keys it resolves into; data.n_edits:
# a cell's own column; eval: how the run was read (except its protocol, which decides);
# method.step: how the iterations are launched (the same model either way).
BOOKKEEPING = (
    "seed", "results_dir", "run_name", "save", "resume", "checkpoint", "logger", "hydra",
    "model.device", "model.layers", "data.n_edits", "eval", "method.step",
)  # fmt: skip
DECIDING_EVAL = ("eval.protocol",)
GROUPS = {p.name for p in CONF.iterdir() if p.is_dir()}  # config groups: method=, model=, ...


def number(row: Row, column: str) -> float | None:
    """The column as a float; None when absent, empty or not a number."""
    try:
        value = float(row.get(column, "") or "nan")
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN: not measured


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"method": {"k": 2}}`` -> ``{"method.k": 2}``; lists become tuples (comparable)."""
    if not isinstance(tree, dict):
        return {prefix: tuple(tree) if isinstance(tree, list) else tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def decides(key: str) -> bool:
    """Whether a dotted config key is part of what a run computes (not bookkeeping)."""
    if key in DECIDING_EVAL:
        return True
    return not any(key == b or key.startswith(f"{b}.") for b in BOOKKEEPING)


def deciding(cfg: Any) -> dict[str, Any]:
    """The resolved keys of a config that decide its result, dotted."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if decides(k)}


@functools.cache
def _group_choice(groups: tuple[str, ...]) -> DictConfig:
    return compose(list(groups))


@functools.cache
def composed(args: tuple[str, ...]) -> dict[str, Any]:
    """The deciding keys of ``python run.py <args>`` as today's ``conf/`` composes it.

    Hydra composes each choice of config groups once; the value overrides (``method.k=3``,
    ``seed=1``) are then set the way Hydra sets them, parsed by its own override parser.
    """
    groups = tuple(a for a in args if a.partition("=")[0].lstrip("+") in GROUPS)
    cfg = _group_choice(groups).copy()
    values = [a for a in args if a not in groups]
    for override in OverridesParser.create().parse_overrides(values):
        OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    return deciding(cfg)


def agree(run: dict[str, Any], spec: dict[str, Any], keys: tuple[str, ...] | None = None) -> bool:
    """Whether two configs have the same value at every key both have (only ``keys``)."""
    shared = run.keys() & spec.keys()
    return all(run[k] == spec[k] for k in shared if keys is None or k in keys)


@dataclass(frozen=True)
class Spec:
    """One cell's runs: ``method=None`` means any method (the unedited model's columns)."""

    method: str | None
    model: str
    data: str
    n_edits: int | None = N_EDITS  # None: any stream length
    overrides: tuple[tuple[str, Any], ...] = ()
    full: bool = False  # needs eval=full: only rows with a retention value
    n_per_task: int | None = None  # with full: only rows on this many inputs per task (None: any)
    any_variant: bool = False  # any configuration matches (the unedited model is the same in all)

    @staticmethod
    def of(method: str | None, model: str, data: str, **kw: Any) -> Spec:
        """A spec with overrides given as a dict (``overrides={"method.k": 3}``)."""
        extra = kw.pop("overrides", {}) or {}
        return Spec(method, model, data, overrides=tuple(sorted(extra.items())), **kw)

    def args(self) -> list[str]:
        """The command-line arguments that make this cell's configuration."""
        args = [f"method={self.method or 'elder'}", f"model={self.model}", f"data={self.data}"]
        return args + [f"{k}={v}" for k, v in self.overrides]

    def config(self, seed: Any = 0) -> dict[str, Any]:
        """The deciding keys of this cell's configuration, composed with ``seed``."""
        return composed((*self.args(), f"seed={seed}"))

    def command(self) -> str:
        """The command that produces this cell."""
        parts = ["python run.py", *(shlex.quote(a) for a in self.args()[:3])]
        if self.n_edits not in (None, N_EDITS):
            parts.append(f"data.n_edits={self.n_edits}")
        parts += [shlex.quote(a) for a in self.args()[3:]]
        if self.full:
            parts.append("eval=full")
        if self.full and self.n_per_task is not None:
            parts.append(f"eval.retention.n_per_task={self.n_per_task}")
        return " ".join(parts)

    def label(self) -> str:
        """How the cell is named in the Runs and Missing lists."""
        who = name(self.method) if self.method else "Base (unedited; any run)"
        parts = [name(self.data), name(self.model), who]
        if self.n_edits not in (None, N_EDITS):
            parts.append(f"{self.n_edits} edits")
        parts += [f"{k}={v}" for k, v in self.overrides]
        if self.full:
            parts.append("eval=full")
        if self.full and self.n_per_task is not None:
            parts.append(f"{self.n_per_task} per task")
        return " · ".join(parts)


@dataclass
class Runs:
    """``runs.csv`` as a frame, one row per line, beside the run folders under ``dir``.

    Columns: the CSV's (strings), ``order`` (line number), ``n`` (edits, a number), ``config``
    (the run's deciding keys), ``prompt_version`` and ``n_per_task`` (its retention inputs).
    """

    frame: pd.DataFrame
    dir: Path
    _selected: dict[tuple[Spec, bool], pd.DataFrame] = field(default_factory=dict, repr=False)

    def rows(self) -> list[Row]:
        """Every row as a dict, in file order."""
        return self.frame.to_dict("records")

    def select(self, spec: Spec, latest: bool = False) -> pd.DataFrame:
        """The rows that are runs of the spec's cell (``latest``: the latest per seed)."""
        if (spec, latest) not in self._selected:
            rows = self.select(spec) if latest else self._select(spec)
            self._selected[spec, latest] = latest_per_seed(rows) if latest else rows
        return self._selected[spec, latest]

    def _select(self, spec: Spec) -> pd.DataFrame:
        f = self.frame
        keep = (f["model"] == spec.model) & (f["data"] == spec.data)
        if spec.method is not None:
            keep &= f["method"] == spec.method
        if spec.n_edits is not None:
            keep &= f["n"] == spec.n_edits
        if spec.full:  # with retention measured on today's prompts
            keep &= pd.to_numeric(f["retention"], errors="coerce").notna()
            keep &= f["prompt_version"].map(lambda v: v in (None, PROMPT_VERSION))
            if spec.n_per_task is not None:
                keep &= f["n_per_task"].map(lambda v: v == spec.n_per_task)
        rows = f[keep]
        keys = DECIDING_EVAL if spec.any_variant else None
        same = [
            agree(config, spec.config(seed), keys)
            for config, seed in zip(rows["config"], rows["seed"], strict=True)
        ]
        return rows[pd.Series(same, index=rows.index, dtype=bool)]

    def variant(self, row: Row, against: Spec | None = None) -> dict[str, Any]:
        """The deciding keys where a run differs from ``against`` (default: its defaults)."""
        spec = against or Spec.of(row["method"], row["model"], row["data"])
        ref = spec.config(row["seed"])
        return {k: v for k, v in sorted(row["config"].items()) if k in ref and ref[k] != v}


def latest_per_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """For each seed the latest row (by timestamp, then by position in the file), by seed."""
    latest = rows.sort_values(["timestamp", "order"], kind="stable").groupby("seed").tail(1)
    return latest.sort_values("seed", kind="stable")


def load_runs(results: Path) -> Runs:
    """``<results>/runs.csv`` with each row's run config; rows without a run folder left out."""
    runs_dir = results / "runs"
    columns = ["run_id", "timestamp", "method", "model", "data", "n_edits", "seed", "retention"]
    frame = pd.DataFrame(read_rows(results / "runs.csv"), dtype=str)
    frame = frame.reindex(columns=[*frame.columns, *(c for c in columns if c not in frame)])
    frame = frame.fillna("")  # a column some rows lack: empty, as in the CSV
    frame["order"] = range(len(frame))
    frame["n"] = pd.to_numeric(frame["n_edits"], errors="coerce")
    # A run re-evaluated later has several rows: its folder is read once.
    folders = {run_id: _folder(runs_dir / run_id) for run_id in dict.fromkeys(frame["run_id"])}
    lost = [run_id for run_id, found in folders.items() if not found]
    if lost:
        print(f"tables: {len(lost)} run(s) without a run config, left out: {lost}", file=sys.stderr)
    frame = frame[frame["run_id"].map(lambda run_id: bool(folders[run_id])).astype(bool)].copy()
    for key in ("config", "prompt_version", "n_per_task"):
        values = [folders[run_id][key] for run_id in frame["run_id"]]
        frame[key] = pd.Series(values, index=frame.index, dtype=object)
    return Runs(frame, runs_dir)


def _folder(run_dir: Path) -> dict[str, Any]:
    """A run folder's deciding config and retention inputs; {} without a ``config.yaml``."""
    if not (run_dir / "config.yaml").is_file():
        return {}
    cfg = run_config(run_dir)
    retention = cfg.get("eval", {}).get("retention") or {}
    meta = {"prompt_version": None, "n_per_task": retention.get("n_per_task")}
    file = run_dir / "retention.json"
    if file.is_file():  # a re-evaluated run's folder holds its latest evaluation
        written = json.loads(file.read_text())
        meta = {key: written.get(key) for key in meta}
    return {"config": deciding(cfg), **meta}


def method_defaults(method: str) -> dict[str, Any]:
    """The keys of ``method=<method>`` as today's ``conf/`` composes them (default model, data)."""
    config = composed((f"method={method}",))
    return {k.removeprefix("method."): v for k, v in config.items() if k.startswith("method.")}
