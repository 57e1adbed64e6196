"""zsRE in the ROME/MEND evaluation format: one record, one fact, one edit."""

from __future__ import annotations

from elder.data import data_file
from elder.editor import EditRecord
from experiments.streams.files import fields, read_json, take

# EditRecord field -> zsRE key
COLUMNS = dict(
    prompt="src", target="alt", rephrase="rephrase", loc_prompt="loc", loc_target="loc_ans",
    subject="subject",
)  # fmt: skip


def zsre(paths: tuple[str, ...], n_edits: int) -> list[EditRecord]:
    """The first ``n_edits`` zsRE records: src -> alt, rephrase -> alt, loc -> loc_ans."""
    (path,) = paths
    file = data_file(path)
    records = [
        EditRecord(**fields(r, file, i, **COLUMNS), case_id=i, fact=f"zsre:{i}")
        for i, r in enumerate(read_json(file)[:n_edits])
    ]
    return take(records, n_edits, file)
