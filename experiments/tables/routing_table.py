"""How ELDER runs route their own edits: one row per run folder with a ``routing.json``."""

from __future__ import annotations

import json

from experiments.tables.names import name
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Row, Runs

REPORT = "routing.json"  # written by `python -m experiments.elder_analysis.routing <run>`
KINDS = ("edit", "rephrase", "locality")


def _row(row: Row, report: dict, variant: dict) -> list[Num | str]:
    deferral = report["deferral"]
    return [
        row["run_id"],
        " ".join(f"{k.removeprefix('method.')}={v}" for k, v in variant.items()) or "defaults",
        f"{report['n']} ({report['labels']})",
        str(report["distinct_stored_codes"]),
        Num(100 * report["stored_preset_match"], digits=1),
        Num(100 * report["same_as_stored"], digits=1),
        Num(report["hamming_to_stored_mean"]),
        Num(100 * report["preset_match"], digits=1),
        Num(report["guided_loss_median"], digits=1),
        " / ".join(f"{100 * deferral[kind]['deferred']:.0f}" for kind in KINDS),
        " / ".join(str(deferral[kind]["hamming_to_nearest"]["median"]) for kind in KINDS),
    ]


def routing_table(runs: Runs) -> Table:
    """ELDER runs whose folder has a routing report, by dataset and model."""
    blocks: dict[str, list[list[Num | str]]] = {}
    listed: dict[str, list[str]] = {}
    latest = {row["run_id"]: row for row in runs.rows() if row["method"] == "elder"}
    for run_id, row in sorted(latest.items()):
        file = runs.dir / run_id / REPORT
        if not file.is_file():
            continue
        label = f"{name(row['data'])} · {name(row['model'])}"
        report = json.loads(file.read_text())
        blocks.setdefault(label, []).append(_row(row, report, runs.variant(row)))
        listed.setdefault(label, []).append(run_id)
    header = [
        "run",
        "variant",
        "edits (labels)",
        "distinct stored codes",
        "stored = preset %",
        "same code as stored, now %",
        "Hamming to stored",
        "preset now %",
        "guided loss",
        "deferred % (edit / reph. / loc.)",
        "Hamming to nearest (median)",
    ]
    return Table(
        name="routing",
        title="ELDER routing after the stream: do edits keep the code they were stored with?",
        header=header,
        blocks=[Block(label, body) for label, body in blocks.items()],
        notes=[
            "From `python -m experiments.elder_analysis.routing results/runs/<run> [--checkpoint]` "
            "(`<run>/routing.json`): the edited model routes each edit prompt of its stream. "
            "*Stored = preset*: the code stored at the edit is the label's preset allocation. "
            "*Same code as stored, now*: after the whole stream. *Hamming to stored*: mean "
            "distance to it (two random codes at L=6, N=4, k=2: 12 on average). *Preset now*: "
            "the preset allocation in every layer. *Guided loss*: median over the edits "
            "(a router that ignores its input: L·k·ln N = 16.6 at the defaults). Deferral "
            "at the run's ε, and the median Hamming distance to the nearest stored code.",
        ],
        runs=listed,
    )
