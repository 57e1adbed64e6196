"""``python -m experiments.tables [--results results]``: write every table and figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.tables.build import build


def main(argv: list[str] | None = None) -> None:
    """Build the tables and figures and say what was written and what is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    args = parser.parse_args(argv)
    tables, figures = build(args.results)
    for table in tables:
        counts = f"{len(table.runs)} configurations with runs, {len(table.missing)} missing"
        print(f"{args.results}/tables/{table.name}.md, .tex: {counts}")
    for fig in figures:
        print(f"{fig.path or fig.name + '.png'}: {'written' if fig.path else 'no data'}")
    print(f"index: {args.results}/tables/README.md")


if __name__ == "__main__":
    main()
