"""Edit streams: zsRE and CounterFact records as :class:`EditRecord` lists.

Files are read from the data directory named by ``ELDER_DATA_DIR`` (see README, "Data").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from elder.editor import EditRecord

DATA_ENV = "ELDER_DATA_DIR"
# Longest field accepted. zsRE and CounterFact fields are under 300 characters; a field far
# longer is a broken file, and tokenizing megabytes would only delay the context-length error.
MAX_FIELD_CHARS = 5000


@dataclass
class EditStream:
    """A named edit stream, consumed batch after batch."""

    name: str
    records: list[EditRecord]
    batch_size: int

    def batches(self) -> list[list[EditRecord]]:
        return [
            self.records[i : i + self.batch_size]
            for i in range(0, len(self.records), self.batch_size)
        ]


def load_stream(name: str, n_edits: int, batch_size: int, path: str | list[str]) -> EditStream:
    """Read the first ``n_edits`` records of data set ``name`` (a key of READERS)."""
    if name not in READERS:
        raise ValueError(f"unknown data set '{name}'; known: {sorted(READERS)}")
    if batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
    paths = (path,) if isinstance(path, str) else tuple(path)
    return EditStream(name, READERS[name](paths, n_edits), batch_size)


def data_file(path: str) -> Path:
    """Resolve a data path: absolute, or relative to $ELDER_DATA_DIR; fail naming both."""
    file = Path(path)
    if not file.is_absolute():
        root = os.environ.get(DATA_ENV)
        if not root:
            raise FileNotFoundError(
                f"data file '{path}' is relative but ${DATA_ENV} is not set; "
                f"point it at the data directory (see README, 'Data')"
            )
        file = Path(root) / path
    if not file.is_file():
        raise FileNotFoundError(
            f"data file '{path}' not found: looked for {file} "
            f"(${DATA_ENV}={os.environ.get(DATA_ENV, '')!r})"
        )
    return file


def _read_json(file: Path) -> list[dict]:
    try:
        records = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(records, list):
        raise ValueError(f"{file} must hold a JSON list of records")
    return records


def _field(record: dict, key: str, file: Path, index: int) -> str:
    """A non-empty string field of a record, or a ValueError naming the file and the index."""
    where = f"{file}: record {index}"
    if not isinstance(record, dict):
        raise ValueError(f"{where} is a {type(record).__name__}, not a JSON object")
    value = record.get(key)
    if value is None:
        problem = "missing"
    elif not isinstance(value, str):
        problem = f"not a string ({type(value).__name__})"
    elif not value.strip():
        problem = "empty"
    elif len(value) > MAX_FIELD_CHARS:
        problem = f"{len(value)} characters long, over the limit of {MAX_FIELD_CHARS}"
    else:
        return value
    raise ValueError(f"{where}: field '{key}' is {problem}")


def _case_id(record: dict, file: Path, index: int) -> int:
    value = record.get("case_id") if isinstance(record, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(
            f"{file}: record {index}: field 'case_id' must be an integer, got {value!r}"
        )
    return value


def _take(records: list[EditRecord], n_edits: int, file: Path) -> list[EditRecord]:
    if n_edits < 1:
        raise ValueError(f"n_edits must be >= 1, got {n_edits}")
    if n_edits > len(records):
        raise ValueError(f"n_edits={n_edits} but {file} has only {len(records)} usable records")
    return records[:n_edits]


def zsre(paths: tuple[str, ...], n_edits: int) -> list[EditRecord]:
    """The first ``n_edits`` zsRE records: src -> alt, rephrase -> alt, loc -> loc_ans."""
    (path,) = paths
    file = data_file(path)
    records = [
        EditRecord(
            prompt=_field(r, "src", file, i),
            target=_field(r, "alt", file, i),
            rephrase=_field(r, "rephrase", file, i),
            loc_prompt=_field(r, "loc", file, i),
            loc_target=_field(r, "loc_ans", file, i),
            subject=_field(r, "subject", file, i),
            case_id=i,
        )
        for i, r in enumerate(_read_json(file)[:n_edits])
    ]
    return _take(records, n_edits, file)


def counterfact(paths: tuple[str, ...], n_edits: int) -> list[EditRecord]:
    """The first ``n_edits`` CounterFact cases (by case_id) that have a rephrase."""
    files = [data_file(p) for p in paths]
    rows = [(r, f, i) for f in files for i, r in enumerate(_read_json(f))]
    rows.sort(key=lambda row: _case_id(*row))
    records = []
    for r, f, i in rows:
        if not (
            isinstance(r, dict)
            and isinstance(r.get("rephrase_prompt"), str)
            and r["rephrase_prompt"].strip()
        ):
            continue  # the paper's rule: only cases with a rephrase
        records.append(
            EditRecord(
                prompt=_field(r, "prompt", f, i),
                target=_field(r, "target_new", f, i),
                rephrase=_field(r, "rephrase_prompt", f, i),
                loc_prompt=_field(r, "locality_prompt", f, i),
                loc_target=_field(r, "locality_ground_truth", f, i),
                subject=_field(r, "subject", f, i),
                case_id=_case_id(r, f, i),
            )
        )
        if len(records) == n_edits:
            break
    return _take(records, n_edits, files[0])


READERS = {"zsre": zsre, "counterfact": counterfact}
