"""Reliability on the first and the last edits of a stream: how much of the early edits survive.

    python -m experiments.tools.forgetting results/runs/<run> [more runs] [--window 100]

Reads each run's predictions (``predictions.jsonl.gz``; edit prompts in stream order) and prints
the exact-match reliability on edits 1..window and on the last ``window`` edits, after the whole
stream.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.results import predictions_file, read_jsonl


def edit_exact(run_dir: Path) -> list[bool]:
    """Exact match of each edit prompt, in stream order, from the run's predictions."""
    file = predictions_file(run_dir)
    if not file.is_file():
        raise FileNotFoundError(f"no predictions in {run_dir} (looked for {file})")
    return [bool(r["exact"]) for r in read_jsonl(file) if r["split"] == "edit"]


def first_last(exact: list[bool], window: int) -> tuple[float, float]:
    """Reliability on the first and on the last ``window`` edits."""
    if not 0 < window <= len(exact):
        raise ValueError(f"window must be in 1..{len(exact)} (the run's edits), got {window}")
    return sum(exact[:window]) / window, sum(exact[-window:]) / window


def main(argv: list[str] | None = None) -> int:
    """Print one line per run; 0 on success, 2 with one line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        lines = []
        for run_dir in args.run_dirs:
            exact = edit_exact(run_dir)
            first, last = first_last(exact, args.window)
            lines.append(
                f"{run_dir.name}: first / last {args.window} of {len(exact)} edits: "
                f"{first:.2f} / {last:.2f}"
            )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
