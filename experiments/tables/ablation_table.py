"""The ELDER+ ablation (issue #24): each option alone on faithful ELDER, and the preset without
each option, on 200 zsRE edits (``python -m experiments.elder_analysis.ablation``)."""

from __future__ import annotations

from experiments.elder_analysis.ablation import variants
from experiments.tables.cells import Collector
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Runs, Spec

MODEL, DATA, N_EDITS, N_PER_TASK = "smollm2_135m", "zsre", 200, 20
COLUMNS = [  # (runs.csv column, header, scale)
    ("reliability", "Rel.", 100.0),
    ("generalization", "Gen.", 100.0),
    ("locality", "Loc.", 100.0),
    ("agreement", "Agreement", 100.0),
    ("reliability_immediate", "Rel. immediate", 100.0),
    ("deferred_edit", "deferred: edit", 100.0),
    ("deferred_rephrase", "reph.", 100.0),
    ("deferred_locality", "loc.", 100.0),
    ("deferred_tasks", "tasks", 100.0),
    ("s_per_edit", "s/edit", 1.0),
    ("extra_params", "extra params (M)", 1e-6),
]


def ablation_table(runs: Runs) -> Table:
    """One row per variant (%, s/edit in seconds, parameters in millions)."""
    c = Collector(runs)
    body: list[list[Num | str]] = []
    for label, overrides in variants().items():
        spec = Spec.of(
            "elder",
            MODEL,
            DATA,
            n_edits=N_EDITS,
            overrides=overrides,
            full=True,
            n_per_task=N_PER_TASK,
        )
        body.append([label, *(c.cell(spec, col, scale=s) for col, _, s in COLUMNS)])
    return c.table(
        name="elder_plus_ablation",
        title=(
            f"ELDER+ ablation: {N_EDITS} zsRE edits, SmolLM2-135M, "
            f"eval=full ({N_PER_TASK} per task)"
        ),
        header=["Variant", *(h for _, h, _ in COLUMNS)],
        blocks=[Block("", body)],
        notes=[
            "*faithful*: ELDER at the paper's and the reference code's defaults. *preset*: ELDER+ "
            "v1, the combination as first built (rehearsal, no protection); today's "
            "`+preset=elder_plus` is its *preset +protect -rehearse +N64* row (64 LoRAs per layer; "
            "the preset before 2026-12-03 had 16: *preset +protect -rehearse*). *+option*: that "
            "option alone on faithful ELDER; *preset −option*: v1 with that "
            "option back at faithful ELDER's value; *preset +option*: an option not in "
            "v1, added to it (the *preset +protect* run predates protect's anchored projection "
            "and per-key tolerance: commit 7b3ad3e; prefixes = 2 context prefixes per edit, "
            "stop_loss = 0.01, "
            "lr1e-3 = lr 1e-3, protect = `protect=null_space`, whose -rehearse drops the "
            "replay it makes needless, +subject = `query_pool=subject` at `radius` 0.019, the "
            "radius reaching 1% of outside CounterFact locality prompts). Options: "
            "route = `route=memory` "
            "(`radius` 0.024); query = the residual entering `memory_query_block` averaged over "
            "the prompt; N16k1 = 16 LoRAs per layer, one per input; lr = 1e-2; rehearse = 8 "
            "stored edits replayed per batch. *Deferred*: share of each kind of input that "
            "gets the unedited model (tasks: the retention tasks' inputs). A route=memory run "
            "routes a stored edit prompt by its own stored query, so its allocation is the "
            "one it was trained with unless it is deferred (*deferred: edit*). s/edit depends "
            "on how many jobs shared the 2-core CPU (results/README.md).",
        ],
    )
