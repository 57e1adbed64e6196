"""zsRE in the ROME/MEND evaluation format: one record, one fact, one edit."""

from __future__ import annotations

from elder.editor import EditRecord
from experiments.streams.files import data_file, field, read_json, take


def zsre(paths: tuple[str, ...], n_edits: int) -> list[EditRecord]:
    """The first ``n_edits`` zsRE records: src -> alt, rephrase -> alt, loc -> loc_ans."""
    (path,) = paths
    file = data_file(path)
    records = [
        EditRecord(
            prompt=field(r, "src", file, i),
            target=field(r, "alt", file, i),
            rephrase=field(r, "rephrase", file, i),
            loc_prompt=field(r, "loc", file, i),
            loc_target=field(r, "loc_ans", file, i),
            subject=field(r, "subject", file, i),
            case_id=i,
            fact=f"zsre:{i}",
        )
        for i, r in enumerate(read_json(file)[:n_edits])
    ]
    return take(records, n_edits, file)
