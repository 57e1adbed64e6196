"""Reading and checking data files: each field a record must have (where a file is found:
:mod:`elder.data`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elder.editor import EditRecord

# Longest field accepted. zsRE and CounterFact fields are under 300 characters; a field far
# longer is a broken file, and tokenizing megabytes would only delay the context-length error.
MAX_FIELD_CHARS = 5000


def read_json(file: Path, shape: type = list, what: str = "a JSON list of records") -> Any:
    """The file's JSON, which must be a ``shape``; a ValueError naming the file otherwise."""
    try:
        content = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(content, shape):
        raise ValueError(f"{file} must hold {what}")
    return content


def strings(value: object, what: str, at_least: int = 0) -> list[str]:
    """``value`` as a list of (at least ``at_least``) non-empty strings, or a ValueError."""
    ok = isinstance(value, list) and all(
        isinstance(v, str) and v.strip() and len(v) <= MAX_FIELD_CHARS for v in value
    )
    if not ok or len(value) < at_least:
        size = f"at least {at_least} " if at_least else ""
        raise ValueError(f"{what} must be a list of {size}non-empty strings, got {value!r:.80}")
    return value


def field(record: dict, key: str, file: Path, index: int) -> str:
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


def fields(record: dict, file: Path, index: int, **keys: str) -> dict[str, str]:
    """:func:`field` per keyword: ``fields(r, f, i, prompt="src")`` -> ``{"prompt": r["src"]}``."""
    return {name: field(record, key, file, index) for name, key in keys.items()}


def case_id(record: dict, file: Path, index: int) -> int:
    value = record.get("case_id") if isinstance(record, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(
            f"{file}: record {index}: field 'case_id' must be an integer, got {value!r}"
        )
    return value


def take(records: list[EditRecord], n_edits: int, file: Path) -> list[EditRecord]:
    if n_edits < 1:
        raise ValueError(f"n_edits must be >= 1, got {n_edits}")
    if n_edits > len(records):
        raise ValueError(f"n_edits={n_edits} but {file} has only {len(records)} usable records")
    return records[:n_edits]
