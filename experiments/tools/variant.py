"""Evaluate a saved run again with other inference-time options, as a new run, without editing.

    python -m experiments.tools.variant results/runs/<run> method.eps=6 [--name <run name>]

ELDER's deferral threshold ε (``method.eps``) only decides, at inference, which inputs fall
back to the unedited model; training never reads it. So the paper's ε sweep (Table 5) needs
one edited model, evaluated once per ε. Only the fields an editor lists in
``Editor.inference_options`` may change (ELDER: ``eps``); any other field changes what
``edit()`` trains and is refused: that is a new run (``python run.py ...``).

The new run folder (next to the source) gets the source's config with the new values, its own
``predictions.jsonl.gz`` and ``metrics.json`` and, when the source was run with ``eval=full``,
retention on the same task sample. Its ``runs.csv`` row keeps the source's editing columns
(``git_commit``, ``s_per_edit``, ``wall_s``, ``extra_params``), names the source in
``derived_from`` and this code in ``eval_commit``; the saved edits stay in the source folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from elder.saved import SAVED_DIR, check_inference_options, load, load_base, run_config
from experiments.checkpoint import lock_run, read_base_eval
from experiments.evaluation import (
    base_key,
    base_predictions,
    evaluate_edited,
)
from experiments.results import finish_run, git_commit, write_text
from experiments.runner import build, retention_evaluator

# The source row's columns that describe the editing, which the variant shares.
EDITING = (
    "git_commit", "machine", "method", "model", "data", "n_edits", "seed", "s_per_edit",
    "extra_params", "wall_s", "protocol",
)  # fmt: skip


def parse_options(options: list[str]) -> dict[str, Any]:
    """``["method.eps=6"]`` -> ``{"eps": 6}`` (values typed as YAML: 6 is an int)."""
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.startswith("method.") or key.count(".") != 1:
            raise ValueError(f"expected method.<field>=<value>, got {option!r}")
        parsed[key.removeprefix("method.")] = OmegaConf.from_dotlist([f"v={value}"]).v
    if not parsed:
        raise ValueError("name at least one option to change, e.g. method.eps=6")
    return parsed


def derive(source: str | Path, options: list[str], name: str | None = None) -> dict[str, Any]:
    """Evaluate ``source``'s saved edits with ``options``; returns the new run's row."""
    t0, commit = time.perf_counter(), git_commit()  # the code that evaluates
    source = Path(source)
    if not (source / "metrics.json").is_file():
        raise FileNotFoundError(f"{source} has not finished (no metrics.json)")
    if not (source / SAVED_DIR).is_dir():
        raise FileNotFoundError(f"{source} has no saved edits ('{SAVED_DIR}/'): save=true")
    changed = parse_options(options)
    cfg = run_config(source)
    unknown = sorted(set(changed) - set(cfg.method))
    if unknown:
        raise ValueError(f"{source}: the method's config has no field {', '.join(unknown)}")
    name = name or source.name + "".join(f"_{k}{v}" for k, v in changed.items())
    run_dir = source.parent / name
    if (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir} already exists: pick another --name")

    check_inference_options(source, changed)  # before any work

    model = load_base(source)
    stream = build(cfg.data)
    bs = cfg.eval.batch_size
    base = read_base_eval(source)
    if base is None:  # the unedited model, before the saved edits go in
        key = base_key(model, stream, bs)
        base = base_predictions(model, stream, bs, key, cfg.eval.get("base_cache_dir"))
    retention = retention_evaluator(cfg, model)  # fingerprints the untouched weights
    if retention is not None:
        retention.prepare()  # the unedited outputs (cached), likewise
    editor = load(source, model=model, options=changed)

    run_dir.mkdir(parents=True, exist_ok=True)
    with lock_run(run_dir):
        cfg.method.merge_with(changed)
        cfg.run_name = name
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        source_row = json.loads((source / "metrics.json").read_text())
        kept = [
            o
            for o in shlex.split(source_row.get("overrides", ""))
            if o.split("=", 1)[0] not in {"run_name", *(f"method.{k}" for k in changed)}
        ]
        overrides = [*kept, *(f"method.{k}={v}" for k, v in changed.items()), f"run_name={name}"]
        write_text(run_dir / "overrides.txt", shlex.join(overrides))

        result, predictions = evaluate_edited(
            editor, model, stream, cfg.eval, base, retention, run_dir
        )
        row = {
            "run_id": name,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **{k: source_row[k] for k in EDITING if k in source_row},
            **{k: round(v, 6) for k, v in result.items()},
            "total_s": round(time.perf_counter() - t0, 1),
            "overrides": shlex.join(overrides),
            "derived_from": source.name,
            "eval_commit": commit,
        }
        finish_run(run_dir, cfg.results_dir, row, predictions)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a run folder made with save=true")
    parser.add_argument("options", nargs="+", help="method.<field>=<value>, e.g. method.eps=6")
    parser.add_argument("--name", help="the new run's name (default: <source>_<field><value>)")
    args = parser.parse_args()
    row = derive(args.source, args.options, args.name)
    shown = ("reliability", "generalization", "locality", "retention", "agreement")
    print(f"{row['run_id']}: " + ", ".join(f"{k} {row[k]:.4f}" for k in shown if k in row))


if __name__ == "__main__":
    main()
