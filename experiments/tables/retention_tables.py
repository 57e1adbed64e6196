"""Table 2 (test retention) and Tables 7-10 (retention per general task)."""

from __future__ import annotations

from experiments.configs import compose
from experiments.tables import paper
from experiments.tables.cells import Collector
from experiments.tables.names import (
    DATASETS,
    METHOD_ROWS,
    MODELS,
    N_EDITS,
    PAPER_MODELS,
    name,
)
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Runs, Spec

# Which paper table holds each (data, model) of the per-task results.
PAPER_TASK_TABLE = {
    ("zsre", "llama2_7b"): 7,
    ("zsre", "gpt2_xl"): 8,
    ("counterfact", "llama2_7b"): 9,
    ("counterfact", "gpt2_xl"): 10,
}
RETENTION_NOTE = (
    "Test retention: the mean of the 8 task scores (%; Gu et al. 2024's benchmark, "
    "experiments/retention). Base: the unedited model (`base_retention*` columns of any "
    "`eval=full` run of that model and data). Each run lists the task inputs it used; "
    "cells on different subsamples (`eval.retention.n_per_task`) do not compare exactly."
)


def tasks() -> list[str]:
    """The tasks in the retention mean, as ``conf/eval/full.yaml`` lists them."""
    return list(compose(["eval=full"]).eval.retention.tasks)


def _base(model: str, data: str) -> Spec:
    return Spec.of(None, model, data, full=True, any_variant=True)


def table2(runs: Runs) -> Table:
    """Test retention per method, one column per dataset and model (and the paper's)."""
    c = Collector(runs)
    header = ["Method"]
    for data in DATASETS:
        for model in MODELS:
            header.append(f"{name(data)} · {name(model)}")
            if model in PAPER_MODELS:
                header.append(f"{name(data)} · {name(model)} (paper)")
    body = []
    for method, label, extra in [("base", "base", {}), *METHOD_ROWS]:
        row: list[Num | str] = [name(label)]
        for data in DATASETS:
            for model in MODELS:
                if method == "base":
                    row.append(c.cell(_base(model, data), "base_retention", digits=1))
                else:
                    spec = Spec.of(method, model, data, full=True, overrides=extra)
                    row.append(c.cell(spec, "retention", digits=1))
                if model in PAPER_MODELS:
                    row.append(paper.cell("table2", data, model, label, digits=1))
        body.append(row)
    return c.table(
        name="table2",
        title=f"Table 2: test retention on general tasks (%) after {N_EDITS} edits",
        header=header,
        blocks=[Block("", body)],
        notes=[RETENTION_NOTE, "Paper: the ELDER paper's Table 2."],
    )


def table7_10(runs: Runs) -> Table:
    """Per-task retention, one block per (data, model); the paper's Tables 7-10 beside ours."""
    c = Collector(runs)
    task_list = tasks()
    blocks = []
    for data in DATASETS:
        for model in MODELS:
            number = PAPER_TASK_TABLE.get((data, model))
            body = []
            for method, key, extra in [("base", "base", {}), *METHOD_ROWS]:
                if method == "base":
                    spec, prefix, avg = _base(model, data), "base_retention_", "base_retention"
                else:
                    spec = Spec.of(method, model, data, full=True, overrides=extra)
                    prefix, avg = "retention_", "retention"
                ours = [c.cell(spec, prefix + t, digits=1) for t in task_list]
                label = name(key) + (" (ours)" if number else "")
                body.append([label, *ours, c.cell(spec, avg, digits=1)])
                if number:
                    theirs = [paper.task_cell(data, model, key, t) for t in task_list]
                    avg_paper = paper.task_cell(data, model, key, "avg")
                    body.append([f"{name(key)} (paper)", *theirs, avg_paper])
            label = f"{name(data)} · {name(model)}"
            blocks.append(Block(label + (f" (paper: Table {number})" if number else ""), body))
    return c.table(
        name="table7_10",
        title=f"Tables 7-10: retention per general task (%) after {N_EDITS} edits",
        header=["Method", *[name(t) for t in task_list], "Avg. (retention)"],
        blocks=blocks,
        notes=[
            RETENTION_NOTE,
            "Paper: the ELDER paper's Tables 7 (LLaMA2-7B, ZsRE), 8 (GPT2-XL, ZsRE), "
            "9 (LLaMA2-7B, CounterFact) and 10 (GPT2-XL, CounterFact).",
        ],
    )
