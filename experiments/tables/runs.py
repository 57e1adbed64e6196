"""Rows of ``runs.csv`` and the cell specs they are matched against.

A cell is defined by a :class:`Spec`: method, model, data, number of edits and the overrides
that make the variant (``{"method.k": "3"}``). A row matches when those columns agree and its
*normalized* overrides equal the spec's: group selectors and bookkeeping keys are dropped,
values are compared in a canonical form (``1e-3`` == ``0.001``) and an override that sets a
method key to its default in ``conf/method/<method>.yaml`` is dropped too.
"""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from elder.saved import run_config
from experiments.retention.prompts import PROMPT_VERSION
from experiments.tables.names import N_EDITS, name

CONF = Path(__file__).resolve().parents[2] / "conf"
Row = dict[str, str]

GROUPS = {"method", "model", "data", "eval", "logger", "sweep"}  # config group selectors
# model.device: where the model runs, not what it computes (a GPU run of the default config is
# the default cell; dtype, in contrast, is a variant).
BOOKKEEPING = {"run_name", "save", "resume", "results_dir", "seed", "data.n_edits", "model.device"}
BOOKKEEPING_PREFIXES = ("checkpoint.", "eval.", "hydra.", "logger.")


def number(row: Row, column: str) -> float | None:
    """The column as a float; None when absent, empty or not a number."""
    try:
        value = float(row.get(column, "") or "nan")
    except ValueError:
        return None
    return None if value != value else value  # NaN: not measured


def parse_overrides(text: str) -> dict[str, str]:
    """``"method=melo method.lr=1e-3"`` -> ``{"method": "melo", "method.lr": "1e-3"}``."""
    try:
        tokens = shlex.split(text or "")
    except ValueError:  # an unbalanced quote: fall back to whitespace
        tokens = (text or "").split()
    out = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep:
            out[key.lstrip("+")] = value
    return out


def canonical(value: Any) -> str:
    """One spelling per value: numbers as floats, booleans and null in lower case, no quotes."""
    text = str(value).strip().strip("'\"")
    if text.lower() in {"true", "false", "null"}:
        return text.lower()
    if value is None:
        return "null"
    try:
        return repr(float(text))
    except ValueError:
        return text


@functools.cache
def method_defaults(method: str) -> dict[str, str]:
    """The plain (non-interpolated) defaults of ``conf/method/<method>.yaml``, canonical."""
    file = CONF / "method" / f"{method}.yaml"
    if not file.is_file():
        return {}
    cfg = yaml.safe_load(file.read_text()) or {}
    return {
        k: canonical(v)
        for k, v in cfg.items()
        if not isinstance(v, (dict, list)) and "${" not in str(v) and not k.startswith("_")
    }


@functools.cache
def conf_value(file: str, key: str, default: Any = None) -> Any:
    """A top-level key of a config file under ``conf/`` (``"eval/edit.yaml"``)."""
    path = CONF / file
    cfg = yaml.safe_load(path.read_text()) if path.is_file() else None
    return (cfg or {}).get(key, default)


def is_bookkeeping(key: str) -> bool:
    """Selectors (``sweep``, ``hydra/launcher``) and keys that do not change the result."""
    if key in GROUPS or key in BOOKKEEPING or "/" in key:
        return True
    return key.startswith(BOOKKEEPING_PREFIXES)


def normalize(overrides: dict[str, str], method: str) -> dict[str, str]:
    """The overrides that define a variant: no selectors, no bookkeeping, no default values."""
    defaults = method_defaults(method)
    out = {}
    for key, value in overrides.items():
        if is_bookkeeping(key):
            continue
        sub = key.removeprefix("method.")
        if key.startswith("method.") and defaults.get(sub) == canonical(value):
            continue
        out[key] = canonical(value)
    return out


def config_variant(run_dir: Path, method: str) -> dict[str, str]:
    """A run's variant, read off its ``config.yaml``: method keys off their default.

    The run folder is the truth: a resumed row records only the resume command's overrides,
    and a run made before an option existed ran with the value its config is upgraded to
    (``elder.saved.run_config``), which may not be today's default.
    """
    if not (run_dir / "config.yaml").is_file():
        return {}
    cfg = OmegaConf.to_container(run_config(run_dir), resolve=False)
    section = cfg.get("method") or {}
    defaults = method_defaults(method)
    return {
        f"method.{k}": canonical(v)
        for k, v in section.items()
        if k in defaults and canonical(v) != defaults[k]
    }


def row_variant(row: Row, runs_dir: Path | None = None) -> dict[str, str]:
    """The normalized overrides of a row (a resumed row's from its run folder's config)."""
    run_dir = runs_dir / row.get("run_id", "") if runs_dir is not None else None
    return dict(_variant(row.get("overrides", ""), row.get("method", ""), run_dir))


@functools.lru_cache(maxsize=65536)  # every cell looks at every row: parse each row once
def _variant(overrides: str, method: str, run_dir: Path | None) -> tuple[tuple[str, str], ...]:
    variant = normalize(parse_overrides(overrides), method)
    if run_dir is not None:
        variant = {**config_variant(run_dir, method), **variant}
    return tuple(sorted(variant.items()))


@functools.cache
def _retention_meta(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    meta = json.loads(file.read_text())
    return {key: meta.get(key) for key in ("prompt_version", "n_per_task")}


def retention_meta(row: Row, runs_dir: Path | None) -> dict[str, Any]:
    """``prompt_version`` and ``n_per_task`` of a row's retention outputs, read from its run
    folder's ``retention.json``; {} when there is none.

    A re-evaluated run's folder holds its latest evaluation, which is also its latest row's.
    """
    if runs_dir is None or not row.get("run_id"):
        return {}
    return _retention_meta(runs_dir / row["run_id"] / "retention.json")


def retention_prompt(row: Row, runs_dir: Path | None) -> str | None:
    """The prompt version of a row's retention outputs; None when it cannot be told."""
    return retention_meta(row, runs_dir).get("prompt_version")


@dataclass(frozen=True)
class Spec:
    """One cell's runs: ``method=None`` means any method (the unedited model's columns)."""

    method: str | None
    model: str
    data: str
    n_edits: int = N_EDITS
    overrides: tuple[tuple[str, str], ...] = ()
    full: bool = False  # needs eval=full: only rows with a retention value
    any_variant: bool = False  # any overrides match (the unedited model is the same in all)

    @staticmethod
    def of(method: str | None, model: str, data: str, **kw: Any) -> Spec:
        """A spec with overrides given as a dict (``overrides={"method.k": 3}``)."""
        extra = kw.pop("overrides", {}) or {}
        return Spec(method, model, data, overrides=tuple(sorted(extra.items())), **kw)

    def matches(self, row: Row, runs_dir: Path | None = None) -> bool:
        """Whether the row is one of this cell's runs."""
        if self.method is not None and row.get("method") != self.method:
            return False
        if row.get("model") != self.model or row.get("data") != self.data:
            return False
        if number(row, "n_edits") != self.n_edits:
            return False
        protocol = conf_value("eval/edit.yaml", "protocol")
        if row.get("protocol") and protocol and row["protocol"] != protocol:
            return False
        if self.full and number(row, "retention") is None:
            return False
        if self.full and retention_prompt(row, runs_dir) not in (None, PROMPT_VERSION):
            return False  # generated with older prompts: not comparable with current rows
        if self.any_variant:
            return True
        method = self.method or row.get("method", "")
        want = normalize(dict(self.overrides), method)
        return row_variant(row, runs_dir) == want

    def command(self) -> str:
        """The command that produces this cell."""
        parts = ["python run.py", f"method={self.method or 'elder'}", f"model={self.model}"]
        parts.append(f"data={self.data}")
        if self.n_edits != N_EDITS:
            parts.append(f"data.n_edits={self.n_edits}")
        parts += [f"{k}={v}" for k, v in self.overrides]
        parts += _pinned_args(self.method, self.model, dict(self.overrides))
        if self.full:
            parts.append("eval=full")
        return " ".join(parts)

    def label(self) -> str:
        """How the cell is named in the Runs and Missing lists."""
        who = name(self.method) if self.method else "Base (unedited; any run)"
        parts = [name(self.data), name(self.model), who]
        if self.n_edits != N_EDITS:
            parts.append(f"{self.n_edits} edits")
        parts += [f"{k}={v}" for k, v in self.overrides]
        parts += _pinned_args(self.method, self.model, dict(self.overrides))
        if self.full:
            parts.append("eval=full")
        return " · ".join(parts)


def _pinned_args(method: str | None, model: str, overrides: dict[str, str]) -> list[str]:
    """What a cell's command needs beyond its overrides to make the cell's configuration.

    Every ELDER run with ``method.query=residual`` predates issue #23 and routed from the first
    MoLoRA block; today's model configs put ``query_block`` one block lower (README, "ELDER's
    options"), so the command pins it. ``query_block`` is interpolated from the model config
    and so is not part of a row's variant: a residual run from another block would share the
    cell, and none exists.
    """
    if method != "elder" or overrides.get("method.query") != "residual":
        return []
    if "model.layers.elder.query_block" in overrides:
        return []
    first = ((conf_value(f"model/{model}.yaml", "layers") or {}).get("elder") or {}).get("first")
    return [] if first is None else [f"model.layers.elder.query_block={first}"]
