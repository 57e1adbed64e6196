"""The README's table: every method on SmolLM2, each stream's Rel./Gen./Loc., and retention."""

from __future__ import annotations

from experiments.tables.cells import Collector
from experiments.tables.names import DATASETS, METHOD_ROWS, PAPER_PROTOCOL_DATASETS, name
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Runs, Spec

MODEL = "smollm2_135m"
METRICS = [("reliability", "Rel."), ("generalization", "Gen."), ("locality", "Loc.")]


def summary_table(runs: Runs) -> Table:
    """Per method: Rel., Gen. and Loc. on each stream, and test retention on zsRE (%)."""
    c = Collector(runs)
    streams = DATASETS + PAPER_PROTOCOL_DATASETS
    header = ["Method"] + [f"{label} {name(d)}" for d in streams for _, label in METRICS]
    header.append(f"Retention {name('zsre')}")
    base: list[Num | str] = ["Base"]
    for data in streams:
        spec = Spec.of(None, MODEL, data, any_variant=True)
        base += [c.cell(spec, f"base_{metric}", digits=1) for metric, _ in METRICS[:2]] + [""]
    base.append(c.cell(Spec.of(None, MODEL, "zsre", full=True, any_variant=True),
                       "base_retention", digits=1))  # fmt: skip
    body = [base] + [_method_row(c, streams, *row) for row in METHOD_ROWS]
    return c.table(
        name="summary",
        title=f"Summary: every method on {name(MODEL)}, 1000 edits, after the whole stream (%)",
        header=header,
        blocks=[Block("", body)],
        notes=[
            "Rel./Gen.: exact match of the edits / held-out phrasings, teacher-forced (the "
            "paper's metric); Loc.: locality prompts unchanged; Retention: the 8 general tasks. "
            "Base: the unedited model. Strict streams: one fact per edit; CounterFact (paper "
            "protocol): two phrasings per fact edited, a third held out. Details: Tables 1-2.",
        ],
    )


def _method_row(
    c: Collector, streams: list[str], method: str, label: str, extra: dict
) -> list[Num | str]:
    """One method's cells: each stream's metrics, then its zsRE retention."""
    specs = [Spec.of(method, MODEL, data, overrides=extra) for data in streams]
    cells = [c.cell(spec, metric, digits=1) for spec in specs for metric, _ in METRICS]
    full = Spec.of(method, MODEL, "zsre", overrides=extra, full=True)
    return [name(label), *cells, c.cell(full, "retention", digits=1)]
