"""How ELDER runs route their own edits: one row per run folder with a ``routing.json``, in
one table for runs with routers and one for ``route=memory`` runs (whose report differs)."""

from __future__ import annotations

import json
from collections.abc import Callable

from experiments.tables.names import name
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Row, Runs

REPORT = "routing.json"  # written by `python -m experiments.elder_analysis.routing <run>`
KINDS = ("edit", "rephrase", "locality")


def _row(row: Row, report: dict, variant: dict) -> list[Num | str]:
    deferral = report["deferral"]
    return [
        row["run_id"],
        _variant(variant),
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


def _reports(
    runs: Runs, memory: bool, to_row: Callable[[Row, dict, dict], list[Num | str]]
) -> tuple[list[Block], dict[str, list[str]]]:
    """Rows of the ELDER runs with a routing report of one kind (``route=memory`` or
    routers), by dataset and model, and the run ids of each block."""
    blocks: dict[str, list[list[Num | str]]] = {}
    listed: dict[str, list[str]] = {}
    latest = {row["run_id"]: row for row in runs.rows() if row["method"] == "elder"}
    for run_id, row in sorted(latest.items()):
        file = runs.dir / run_id / REPORT
        if not file.is_file():
            continue
        report = json.loads(file.read_text())
        if ("routed" in report) != memory:
            continue
        label = f"{name(row['data'])} · {name(row['model'])}"
        blocks.setdefault(label, []).append(to_row(row, report, runs.variant(row)))
        listed.setdefault(label, []).append(run_id)
    return [Block(label, body) for label, body in blocks.items()], listed


def _variant(variant: dict) -> str:
    return " ".join(f"{k.removeprefix('method.')}={v}" for k, v in variant.items()) or "defaults"


def routing_table(runs: Runs) -> Table:
    """ELDER runs with routers whose folder has a routing report, by dataset and model."""
    blocks, listed = _reports(runs, memory=False, to_row=_row)
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
        blocks=blocks,
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


MEMORY_NOTE = (
    "From `python -m experiments.elder_analysis.routing results/runs/<run>` "
    "(`<run>/routing.json`). Each rephrase of the stream is routed as at inference, "
    "by the nearest stored query. *Own* / *same target*: that query is its own edit's, "
    "or one with its target; *in reach*: within the run's radius, else deferred. The "
    "routed columns give the share of rephrases and their exact-match generalization "
    "there; *other, same subject*: another edit about the same subject. *Subject its "
    "own* / *shared*: the edits whose subject no other edit of the stream has, and the "
    "rest (zsRE's first 1000 records ask some questions several times, each time with "
    "another target)."
)


def _memory_row(row: Row, report: dict, variant: dict) -> list[Num | str]:
    routed, subject = report["routed"], report.get("subject", {})  # (older reports: none)

    def pct(x: float) -> Num:
        return Num(100 * x, digits=1)

    def pair(part: dict | None, first: str, second: str) -> str:
        return f"{100 * part[first]:.1f} / {100 * part[second]:.1f}" if part else "–"

    return [
        row["run_id"],
        _variant(variant) if variant else "+preset=elder_plus",
        str(report["n"]),
        pct(report["own"]),
        pct(report["same_target"]),
        pct(report["in_reach"]),
        pct(report["generalization"]),
        *(
            pair(routed.get(k), "share", "generalization")
            for k in ("own, in reach", "other about its subject, in reach", "deferred")
        ),
        *(pair(subject.get(k), "own", "generalization") for k in ("its own", "shared")),
    ]


def memory_routing_table(runs: Runs) -> Table:
    """``route=memory`` ELDER runs with a routing report: where each rephrase is routed."""
    blocks, listed = _reports(runs, memory=True, to_row=_memory_row)
    return Table(
        name="routing_memory",
        title="ELDER+ routing after the stream: where does each rephrase's nearest stored "
        "query lead?",
        header=[
            "run",
            "variant",
            "edits",
            "own %",
            "same target %",
            "in reach %",
            "Gen.",
            "own, in reach: % / Gen.",
            "other, same subject: % / Gen.",
            "deferred: % / Gen.",
            "subject its own: own % / Gen.",
            "subject shared: own % / Gen.",
        ],
        blocks=blocks,
        notes=[MEMORY_NOTE],
        runs=listed,
    )
