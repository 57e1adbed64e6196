"""ELDER's options where the paper is silent, one at a time (issue #23), on a short zsRE stream.

Each row starts from ELDER's pre-#23 defaults and switches one option to the reference's
choice; the last row has them all (today's defaults). A probe, not a result: 40 edits.
"""

from __future__ import annotations

from experiments.tables.cells import Collector
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Runs, Spec

MODEL, DATA, N_EDITS = "smollm2_135m", "zsre", 40
PRE = {  # the pre-#23 defaults, spelled as the probes' command lines did
    "method.query": "residual",
    "model.layers.elder.query_block": "20",
    "method.lora_init": "peft",
    "method.optimizer": "stream",
    "method.label": "target",
}
SWITCH = {  # option -> the keys whose pre-#23 value is dropped to take today's default
    "query": ("method.query", "model.layers.elder.query_block"),
    "lora_init": ("method.lora_init",),
    "optimizer": ("method.optimizer",),
    "label": ("method.label",),
}
COLUMNS = [
    ("reliability", "Rel."),
    ("reliability_tok", "Rel. tok"),
    ("reliability_immediate", "Rel. immediate"),
    ("reliability_immediate_tok", "Rel. immediate tok"),
    ("generalization", "Gen."),
    ("locality", "Loc."),
    ("reliability_gen_prefix", "Rel. gen prefix"),
    ("s_per_edit", "s/edit"),
]


def _rows() -> list[tuple[str, dict[str, str]]]:
    rows = [("pre-#23 defaults", PRE)]
    for option, keys in SWITCH.items():
        rows.append(
            (f"pre-#23, {option} = reference", {k: v for k, v in PRE.items() if k not in keys})
        )
    rows.append(("all four = reference (today's defaults)", {}))
    rows.append(("today's defaults, lr 1e-2 (MELO's)", {"method.lr": "1e-2"}))
    return rows


def options_table(runs: Runs) -> Table:
    """One row per option switched to the reference's choice (%; s/edit in seconds)."""
    c = Collector(runs)
    body: list[list[Num | str]] = []
    for label, overrides in _rows():
        spec = Spec.of("elder", MODEL, DATA, n_edits=N_EDITS, overrides=overrides)
        cells = [
            c.cell(spec, column, scale=1.0 if column == "s_per_edit" else 100.0)
            for column, _ in COLUMNS
        ]
        body.append([label, *cells])
    return c.table(
        name="elder_options",
        title=f"ELDER's options one at a time: the first {N_EDITS} zsRE edits, SmolLM2-135M",
        header=["Configuration", *(h for _, h in COLUMNS)],
        blocks=[Block("", body)],
        notes=[
            "query = reference: the input of block 19's down_proj (pre-#23: the hidden state "
            "entering block 20); lora_init = reference: A ~ U(±1/√r) (pre-#23: PEFT's "
            "U(±1/√in)); optimizer = reference: a fresh Adam per batch with StepLR(20, 0.5) "
            "(pre-#23: one Adam for the stream); label = reference: the fact (pre-#23: the "
            "target string). lr 1e-4, 50 iterations per batch of 4, the paper's L, N, k, λ, ε. "
            "Rel. immediate: each batch right after its own edit; Rel.: after all 40. "
            "s/edit depends on how many jobs shared the 2-core CPU (see results/README.md).",
        ],
    )
