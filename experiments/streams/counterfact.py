"""CounterFact in EasyEdit's flattened form: one case, one edit."""

from __future__ import annotations

from elder.editor import EditRecord
from experiments.streams.files import case_id, data_file, field, read_json, take


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
        records.append(
            EditRecord(
                prompt=field(r, "prompt", f, i),
                target=field(r, "target_new", f, i),
                rephrase=field(r, "rephrase_prompt", f, i),
                loc_prompt=field(r, "locality_prompt", f, i),
                loc_target=field(r, "locality_ground_truth", f, i),
                subject=field(r, "subject", f, i),
                case_id=case_id(r, f, i),
                fact=f"counterfact:{case_id(r, f, i)}",
            )
        )
        if len(records) == n_edits:
            break
    return take(records, n_edits, files[0])
