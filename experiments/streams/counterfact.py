"""CounterFact in EasyEdit's flattened form: one case, one edit."""

from __future__ import annotations

from elder.data import data_file
from elder.editor import EditRecord
from experiments.streams.files import case_id, fields, read_json, take

# EditRecord field -> key of EasyEdit's flattened CounterFact
COLUMNS = dict(
    prompt="prompt", target="target_new", rephrase="rephrase_prompt",
    loc_prompt="locality_prompt", loc_target="locality_ground_truth", subject="subject",
)  # fmt: skip


def counterfact(paths: tuple[str, ...], n_edits: int) -> list[EditRecord]:
    """The first ``n_edits`` CounterFact cases (by case_id) that have a rephrase."""
    files = [data_file(p) for p in paths]
    rows = [(r, f, i) for f in files for i, r in enumerate(read_json(f))]
    rows.sort(key=lambda row: case_id(*row))
    records = []
    for r, f, i in rows:
        if not (
            isinstance(r, dict)
            and isinstance(r.get("rephrase_prompt"), str)
            and r["rephrase_prompt"].strip()
        ):
            continue  # the paper's rule: only cases with a rephrase
        case = case_id(r, f, i)
        records.append(
            EditRecord(**fields(r, f, i, **COLUMNS), case_id=case, fact=f"counterfact:{case}")
        )
        if len(records) == n_edits:
            break
    return take(records, n_edits, files[0])
