"""Bring runs made elsewhere (the GPU machine, a cluster) into this results folder.

    python -m experiments.tools.merge_results <results folder or .tar.gz> [--into results]

The source is a results folder written by the project's own runner (``results_dir=<folder>``):
a ``runs.csv`` and a folder per run under ``runs/``. Each row that ``<into>/runs.csv`` lacks
(same ``run_id`` and ``timestamp``) is appended, and its run folder copied to
``<into>/runs/``. Everything is checked before anything is written: a row without its folder,
or a run folder that exists here with other files, stops the merge.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from experiments.results import append_row, read_rows

NOT_RESULTS = ("checkpoint", ".lock", "wandb")  # as .gitignore: kept out of results/


def results_root(folder: Path) -> Path:
    """The folder holding ``runs.csv``: ``folder`` itself or its one subfolder (a tarball's)."""
    if (folder / "runs.csv").is_file():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir()]
    if len(inner) == 1 and (inner[0] / "runs.csv").is_file():
        return inner[0]
    raise FileNotFoundError(f"no runs.csv in {folder} (nor in a single subfolder of it)")


def same_files(a: Path, b: Path) -> bool:
    """Whether every file under ``a`` (checkpoints aside) is under ``b`` with the same bytes."""
    for file in a.rglob("*"):
        rel = file.relative_to(a)
        if file.is_file() and not set(NOT_RESULTS) & set(rel.parts):
            other = b / rel
            if not other.is_file() or not filecmp.cmp(file, other, shallow=False):
                return False
    return True


def merge(source: Path, into: Path) -> list[str]:
    """Append ``source``'s new rows to ``into``'s and copy their run folders; their run ids."""
    source = results_root(source)
    have = {(r.get("run_id"), r.get("timestamp")) for r in read_rows(into / "runs.csv")}
    new = [r for r in read_rows(source / "runs.csv") if (r["run_id"], r["timestamp"]) not in have]
    copy = []
    for row in new:
        src, dst = source / "runs" / row["run_id"], into / "runs" / row["run_id"]
        if not src.is_dir():
            raise FileNotFoundError(f"row {row['run_id']} has no run folder (looked at {src})")
        if dst.exists() and not same_files(dst, src):
            raise FileExistsError(f"{dst} exists with other files than {src}: not merged")
        if not dst.exists() and src not in copy:
            copy.append(src)
    for src in copy:
        shutil.copytree(src, into / "runs" / src.name, ignore=shutil.ignore_patterns(*NOT_RESULTS))
    for row in new:
        append_row(into / "runs.csv", {k: v for k, v in row.items() if v != ""})
    return [row["run_id"] for row in new]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a results folder or a .tar.gz of one")
    parser.add_argument("--into", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source
        if source.is_file():
            with tarfile.open(source) as tar:
                tar.extractall(tmp, filter="data")  # no paths outside tmp, no devices
            source = Path(tmp)
        try:
            merged = merge(source, args.into)
        except (FileNotFoundError, FileExistsError) as err:
            sys.exit(f"merge_results: {err}")
    print(f"merged {len(merged)} row(s) into {args.into / 'runs.csv'}: {', '.join(merged)}")


if __name__ == "__main__":
    main()
