"""The same edits read three ways: teacher-forced, free-decoded and immediately after the edit.

Not a table of the paper. The field reports these readings under one name; this table puts
them side by side for every method (``eval.free_decoding``, ``eval.immediate``), with
CounterFact's neighborhood score where the stream's locality probes carry one.
"""

from __future__ import annotations

from experiments.tables.cells import Collector
from experiments.tables.names import DATASETS, METHOD_ROWS, PAPER_PROTOCOL_DATASETS, name
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Runs, Spec

MODEL = "smollm2_135m"  # the model every reading here was measured on
COLUMNS = [  # (runs.csv column, header)
    ("reliability", "Rel. TF"),
    ("reliability_gen", "Rel. gen"),
    ("reliability_gen_prefix", "Rel. gen prefix"),
    ("reliability_immediate", "Rel. immediate"),
    ("generalization", "Gen. TF"),
    ("generalization_gen", "Gen. gen"),
    ("generalization_gen_prefix", "Gen. gen prefix"),
    ("locality", "Loc."),
    ("neighborhood_score", "NS"),
    ("base_neighborhood_score", "NS unedited"),
]


def readings_table(runs: Runs) -> Table:
    """Per method: each reading of reliability and generalization, locality and NS (%)."""
    c = Collector(runs)
    blocks = []
    for data in DATASETS + PAPER_PROTOCOL_DATASETS:
        body: list[list[Num | str]] = []
        for method, label, extra in METHOD_ROWS:
            spec = Spec.of(method, MODEL, data, overrides=extra)
            body.append([name(label), *(c.cell(spec, column) for column, _ in COLUMNS)])
        blocks.append(Block(f"{name(data)} · {name(MODEL)}", body))
    return c.table(
        name="readings",
        title="Readings of one edit stream: teacher-forced, free-decoded, immediate (%)",
        header=["Method", *(header for _, header in COLUMNS)],
        blocks=blocks,
        notes=[
            "TF: teacher-forced exact match after the whole stream (the paper's metric, Table "
            "1). gen: the method's own greedy `generate`, answer cut at EOS or newline, equal "
            "to the target after SQuAD normalisation; gen prefix: the answer begins with the "
            "target. Under greedy decoding TF and gen prefix are one event when a method "
            "routes alike in both paths and the target tokenizes alike: a gap between them "
            "measures where that fails. immediate: each batch's reliability right after its "
            "own edit (LEMoE's immediate, EasyEdit's sequential mode). NS: CounterFact's "
            "neighborhood score (the truth still more likely than the new target, mean "
            "token log-probability), on streams whose locality probes carry the new target.",
            "Runs made before these readings existed have no value in their columns.",
        ],
    )
