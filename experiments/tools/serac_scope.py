"""SERAC's scope classifier on its own: what it puts in scope, layer by layer.

    python -m experiments.tools.serac_scope --n-edits 200 --layers 15,-1
    python -m experiments.tools.serac_scope --data counterfact --overrides method.scale=2

For each ``method.classifier_layer`` in ``--layers``: train the classifier as a SERAC run would
(the counterfactual model not at all), store the stream's first ``--n-edits`` edits, and count
the rephrases and locality prompts in scope, and the rephrases whose nearest stored edit is
their own. A Markdown table goes to stdout and to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from experiments.configs import compose
from experiments.results import write_report
from experiments.runner import build


def scope_rates(overrides: list[str]) -> dict[str, float]:
    """In-scope shares of one classifier, trained and filled as in a run of ``overrides``."""
    cfg = compose(["method=serac", "method.counterfactual_steps=0", *overrides])
    stream, model = build(cfg.data), build(cfg.model)
    editor = build(cfg.method, model=model)
    records = stream.records
    editor.check_stream(records)
    for i in range(0, len(records), stream.batch_size):
        editor.edit(records[i : i + stream.batch_size])
    rates = {}
    for kind, texts in (
        ("rephrase", [r.rephrase for r in records]),
        ("locality", [r.loc_prompt for r in records]),
    ):
        in_scope, index = editor.scope(editor.embed(texts))
        rates[f"{kind} in scope"] = in_scope.float().mean().item()
        if kind == "rephrase":
            own = index == torch.arange(len(records))
            rates["rephrase -> own edit"] = own.float().mean().item()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="zsre")
    parser.add_argument("--n-edits", type=int, default=200)
    parser.add_argument("--layers", default="15,-1", help="comma-separated classifier layers")
    parser.add_argument("--overrides", nargs="*", default=[], help="more run.py overrides")
    parser.add_argument("--out", default="results/serac")
    args = parser.parse_args()

    base = [f"data={args.data}", f"data.n_edits={args.n_edits}", *args.overrides]
    rows, t0 = [], time.perf_counter()
    for layer in args.layers.split(","):
        rates = scope_rates([*base, f"method.classifier_layer={layer}"])
        rows.append((layer, rates))
        print(f"layer {layer}: {rates}", flush=True)
    keys = list(rows[0][1])
    command = "python -m experiments.tools.serac_scope " + " ".join(
        [f"--data {args.data}", f"--n-edits {args.n_edits}", f"--layers {args.layers}"]
        + ([f"--overrides {' '.join(args.overrides)}"] if args.overrides else [])
    )
    text = write_report(
        Path(args.out) / f"scope_{args.data}_{args.n_edits}.md",
        f"SERAC's scope classifier, {args.n_edits} {args.data} edits stored",
        command,
        time.perf_counter() - t0,
        [],
        ["classifier_layer", *keys],
        [[layer, *(r[k] for k in keys)] for layer, r in rows],
    )
    print(text)


if __name__ == "__main__":
    main()
