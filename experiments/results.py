"""Where results go: a folder per run and one row per run in ``results/runs.csv``."""

from __future__ import annotations

import csv
import fcntl
import gzip
import json
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from elder.atomic import atomic_path

PREDICTIONS = "predictions.jsonl.gz"  # every evaluated prompt of a run (gzip'd JSON lines)
LEGACY_PREDICTIONS = "predictions.jsonl"  # the same, uncompressed, in runs before 2026-12-01

# Every run writes these columns first, whatever the method; later columns are added as needed.
CORE_COLUMNS = [
    "run_id",
    "timestamp",
    "git_commit",
    "machine",
    "method",
    "model",
    "data",
    "n_edits",
    "seed",
    "reliability",
    "generalization",
    "locality",
    "reliability_tok",
    "generalization_tok",
    "s_per_edit",
    "extra_params",
    "wall_s",
    "total_s",
    "protocol",
    "overrides",
]


def git_commit(root: Path = Path(__file__).parent.parent) -> str:
    """The commit of the code, ``-dirty`` if tracked files outside ``results/`` differ from it.

    Results written by earlier runs (``runs.csv``, run folders) do not make the code dirty.
    Outside a git checkout (a copy of the tree on a GPU machine): ``$ELDER_GIT_COMMIT`` as
    the copy's sender gave it, else "unknown".
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=root
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("ELDER_GIT_COMMIT") or "unknown"
    return f"{commit}-dirty" if changed else commit


def machine() -> str:
    """A short description of where the numbers were measured."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu:{os.cpu_count()}x{platform.machine()}"


def machine_shares(by_machine: dict[str, tuple[int, float]], batch_size: int, n: int) -> str:
    """Each machine's edits and s/edit, e.g. `m1: 400 edits, 1.527 s/edit; m2: 600 edits, 33.1
    s/edit`; the last machine ran the last (maybe shorter) batch."""
    parts, edits_before = [], 0
    for i, (name, (batches, seconds)) in enumerate(by_machine.items()):
        edits = n - edits_before if i == len(by_machine) - 1 else batches * batch_size
        edits_before += edits
        parts.append(f"{name}: {edits} edits, {seconds / edits:.4g} s/edit")
    return "; ".join(parts)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (the old file or the new one)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_report(
    path: Path,
    title: str,
    command: str,
    seconds: float,
    notes: list[str],
    header: list[str],
    rows: list[list[Any]],
) -> str:
    """A probe's Markdown report: its command, date, machine and time, ``notes`` as bullets,
    and one table (numbers to 3 decimals); written atomically to ``path`` and returned."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- date: {stamp}; machine: {machine()}; {seconds:.0f} s",
        *(f"- {note}" for note in notes),
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---|" * (len(header) - 1),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(lines) + "\n")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (the old file or the new one)."""
    write_text(path, json.dumps(obj, indent=2, default=str))


def append_row(csv_path: Path, row: dict[str, Any]) -> None:
    """Append one row under an exclusive lock; widens the header if the row brings new columns."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows: list[dict[str, Any]] = []
        header: list[str] = []
        if csv_path.exists() and csv_path.stat().st_size:
            with open(csv_path, newline="") as f:
                reader = csv.DictReader(f)
                header, rows = list(reader.fieldnames or []), list(reader)
        if not header:
            header = list(CORE_COLUMNS)
        new = [k for k in row if k not in header]
        if new or not csv_path.exists():
            header += new
            rows.append(row)
            with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header)
                writer.writeheader()
                writer.writerows(rows)
        else:
            with open(csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=header).writerow(row)


def finish_run(
    run_dir: Path, results_dir: str | Path, row: dict[str, Any], predictions: list[dict] | None
) -> None:
    """The end of every run (``run.py``, ``variant``, ``reevaluate``): its outputs, then its row.

    The predictions first, then ``metrics.json`` (which marks the run finished), then the
    ``runs.csv`` row; ``predictions`` None keeps the folder's own.
    """
    if predictions is not None:
        write_jsonl(run_dir / PREDICTIONS, predictions)
        (run_dir / LEGACY_PREDICTIONS).unlink(missing_ok=True)
    write_json(run_dir / "metrics.json", row)
    append_row(Path(results_dir) / "runs.csv", row)


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """All rows of a ``runs.csv`` (missing file: none); absent columns read as empty strings."""
    if not csv_path.is_file():
        return []
    with open(csv_path, newline="") as f:
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically; gzip'd (reproducibly) for ``*.gz``."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.suffix != ".gz":
        write_text(path, text)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text.encode(), mtime=0))  # mtime 0: same rows, same bytes


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file, plain or gzip'd (``*.gz``)."""
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
    return [json.loads(line) for line in text.splitlines() if line]


def predictions_file(run_dir: Path) -> Path:
    """A run's predictions: today's gzip'd file, or an older run's plain one."""
    legacy = run_dir / LEGACY_PREDICTIONS
    return (
        legacy
        if legacy.is_file() and not (run_dir / PREDICTIONS).is_file()
        else run_dir / PREDICTIONS
    )


def keep_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a JSON-lines file with the rows ``keep`` accepts (a no-op without the file)."""
    if not path.is_file():
        return
    write_jsonl(path, [r for r in read_jsonl(path) if keep(r)])


class TrainLog:
    """The editor's statistics of each batch (``edit()``'s return) in ``train.jsonl``.

    A line is written as its batch ends; on resume the lines of batches past the restored
    checkpoint are dropped (those batches run again), so the log has one line per batch.
    """

    FILE = "train.jsonl"

    def __init__(self, run_dir: Path) -> None:
        self.file = run_dir / self.FILE

    def restore(self, batches_done: int) -> None:
        keep_jsonl(self.file, lambda row: row["batch"] < batches_done)

    def log(self, batch: int, stats: dict[str, float]) -> None:
        with self.file.open("a") as f:
            f.write(json.dumps({"batch": batch, **stats}) + "\n")
