"""The ELDER+ ablation (issue #24): each option alone on faithful ELDER, and the preset
without each option, on one zsRE stream.

    python -m experiments.elder_analysis.ablation [--n-edits 200] [--only preset,faithful]

Runs one after another, in the foreground; a finished run is skipped and an unfinished one is
resumed from its checkpoint, so the command can be given again in a later session. The table
is ``make tables`` (``results/tables/elder_plus_ablation.md``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from experiments.tables.names import ELDER_PLUS_V1

# The ablation varies ELDER+ as first built (N=16, no protection, rehearsal), whose runs it
# holds; today's preset is its "preset +protect -rehearse +N64" row.
PRESET = ELDER_PLUS_V1
FAITHFUL = {  # what the preset's options are off (ELDER's paper/reference defaults)
    "method.route": "router",
    "method.query": "fc_input",
    "method.query_block": "${model.layers.elder.query_block}",
    "method.query_pool": "last",
    "method.N": "4",
    "method.k": "2",
    "method.lr": "1e-4",
    "method.rehearse": "0",
}
OPTIONS = {  # option -> the preset keys that make it
    "route": ("method.route", "method.radius"),
    "query": ("method.query", "method.query_block", "method.query_pool"),
    "N16k1": ("method.N", "method.k"),
    "lr": ("method.lr",),
    "rehearse": ("method.rehearse",),
}


CANDIDATES = {  # options not (yet) in the preset, tried on top of it
    "prefixes": {"method.prefixes": "2"},
    "stop_loss": {"method.stop_loss": "0.01"},
    "lr1e-3": {"method.lr": "1e-3"},  # the 40-edit probes: 0.85 at 1e-3 against 0.60 at 1e-2
    "protect": {"method.protect": "null_space"},
    "protect -rehearse": {"method.protect": "null_space", "method.rehearse": "0"},
    "protect -rehearse +N64": {
        "method.protect": "null_space",
        "method.rehearse": "0",
        "method.N": "64",
    },
    # today's preset with the subject query, at the radius that reaches 1% of outside
    # CounterFact locality prompts (results/elder_plus/queries_counterfact_1000.md): on
    # CounterFact-200 gen 0.265 against the mean query's 0.105 (runs/elder_plus_subject_cf200)
    "protect -rehearse +N64 +subject": {
        "method.protect": "null_space",
        "method.rehearse": "0",
        "method.N": "64",
        "method.query_pool": "subject",
        "method.radius": "0.019",
    },
}


def variants() -> dict[str, dict[str, str]]:
    """Variant name -> its method overrides (on ``method=elder``)."""
    out: dict[str, dict[str, str]] = {"faithful": {}}
    for option, keys in OPTIONS.items():
        out[f"+{option}"] = {k: PRESET[k] for k in keys}
    out["preset"] = dict(PRESET)
    for option, keys in OPTIONS.items():
        out[f"preset -{option}"] = {**PRESET, **{k: FAITHFUL[k] for k in keys if k in FAITHFUL}}
    for option, value in CANDIDATES.items():
        out[f"preset +{option}"] = {**PRESET, **value}
    return out


def run_name(variant: str, n_edits: int) -> str:
    slug = variant.replace("+", "plus_").replace(" -", "_minus_").replace(" ", "_")
    return f"elder_ablation_{slug}_zsre{n_edits}"


def command(variant: str, n_edits: int, n_per_task: int, results: str) -> list[str]:
    overrides = variants()[variant]
    return [
        "method=elder",
        f"results_dir={results}",
        f"data.n_edits={n_edits}",
        "eval=full",
        f"eval.retention.n_per_task={n_per_task}",
        "logger=none",
        f"run_name={run_name(variant, n_edits)}",
        *(f"{k}={v}" for k, v in overrides.items()),
    ]


def run_argv(variant: str, n_edits: int, n_per_task: int, results: str) -> list[str] | None:
    """run.py's arguments for the variant: None once it has finished; ``resume=`` once its
    folder exists (killed before its first checkpoint or after it); else a fresh run."""
    folder = Path(results) / "runs" / run_name(variant, n_edits)
    if (folder / "metrics.json").is_file():
        return None
    if (folder / "config.yaml").is_file():
        return [f"resume={folder}"]
    return command(variant, n_edits, n_per_task, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-edits", type=int, default=200)
    parser.add_argument("--n-per-task", type=int, default=20)
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--results", default="results")
    args = parser.parse_args()
    names = [v for v in args.only.split(",") if v] or list(variants())
    unknown = [v for v in names if v not in variants()]
    if unknown:
        sys.exit(f"error: unknown variants {unknown}; known: {list(variants())}")
    for variant in names:
        argv = run_argv(variant, args.n_edits, args.n_per_task, args.results)
        if argv is None:
            print(f"{variant}: done", flush=True)
            continue
        print(f"{variant}: python run.py {' '.join(argv)}", flush=True)
        subprocess.run([sys.executable, "run.py", *argv], check=True)


if __name__ == "__main__":
    main()
