"""Table 3 on a GPU (issue #29): s/edit, inference time and peak memory of every method at the
paper's model shapes with random weights (speed only), from the bench's records
(``results/bench/<shape>_<n>.json``, written by ``python -m experiments.bench --device cuda``)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.tables import paper
from experiments.tables.names import name
from experiments.tables.render import MISSING, Block, Num, Table
from experiments.tables.runs import Runs

SHAPES = {"gpt2_xl_random": "gpt2_xl", "llama2_7b_random": "llama2_7b"}  # shape -> paper model
COMMAND = (
    "python -m experiments.bench --device cuda --models gpt2_xl_random,llama2_7b_random "
    "--n-edits 20 (scripts/device/run.sh bench)"
)
COLUMNS = [  # (record key, header, digits)
    ("s_per_edit", "s/edit", 3),
    ("inference", "inference / unedited", 3),
    ("peak_gib", "peak GiB", 1),
]


def latest_gpu_record(bench: Path, shape: str) -> dict | None:
    """The latest bench record of ``shape`` made on a CUDA device, or None."""
    records = [json.loads(f.read_text()) for f in sorted(bench.glob(f"{shape}_*.json"))]
    on_gpu = [r for r in records if r.get("device") == "cuda" and r.get("model") == shape]
    return max(on_gpu, key=lambda r: r["date"], default=None)


def gpu_table(runs: Runs) -> Table:
    """One row per bench method, per shape its columns and the paper's A40 s/edit."""
    records = {shape: latest_gpu_record(runs.dir.parent / "bench", shape) for shape in SHAPES}
    by_method = {
        shape: {row["name"]: row for row in record["rows"]} if record else {}
        for shape, record in records.items()
    }
    methods = list(dict.fromkeys(m for rows in by_method.values() for m in rows))
    header = ["Method"]
    for model in SHAPES.values():
        header += [f"{h} {name(model)} shape" for _, h, _ in COLUMNS]
        header.append(f"s/edit {name(model)} (paper, A40)")
    body: list[list[Num | str]] = []
    for method in methods:
        line: list[Num | str] = [method]
        for shape, model in SHAPES.items():
            row = by_method[shape].get(method)
            for key, _, digits in COLUMNS:
                value = row.get(key) if row else None
                line.append(MISSING if value is None else Num(value, digits=digits))
            line.append(paper.cell("table3", model, method, "s_per_edit"))
        body.append(line)
    notes = [
        "Random weights (`conf/model/*_random`): the paper's shapes and FLOPs, no edit quality. "
        "Rows are the bench's methods and variants (`experiments/bench.py`: `elder_graph` is "
        "`method.step=cuda_graph`). *inference / unedited*: the edited model's forward time "
        "over the unedited model's on one batch of the stream's prompts. *peak GiB*: the "
        "edited model copy and the method's working set."
    ]
    for shape, record in records.items():
        if record:
            ups = "; ".join(f"{k} {v:.2f}x" for k, v in record["speedups"].items())
            failed = "; ".join(f"{k}: {v}" for k, v in record.get("failed", {}).items())
            notes.append(
                f"{shape}: {record['machine']}, torch {record['torch']}, {record['date']}, "
                f"{record['n_edits']} zsRE edits, inference on "
                f"{record.get('inference_batch', '?')} prompts"
                + (f"; speed-ups: {ups}" if ups else "")
                + (f"; failed: {failed}" if failed else "")
            )
    missing = {f"GPU bench · {shape}": COMMAND for shape, record in records.items() if not record}
    return Table(
        name="table3_gpu",
        title="Table 3 on a GPU: editing cost at the paper's model shapes (random weights)",
        header=header,
        blocks=[Block("", body)],
        notes=notes,
        missing=missing,
    )
