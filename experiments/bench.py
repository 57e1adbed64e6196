"""`make bench`: seconds per edit of each method on the same stream, measured side by side.

ELDER runs twice, on the plain full-forward path and on the fast path (cached frozen prefix,
logits at target positions only); the two must give the same edited model, and the bench
prints the largest parameter difference between them next to the speed-up.

    python -m experiments.bench --n-edits 100 --methods elder_plain,elder
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra.utils import instantiate

from experiments.results import machine
from experiments.runner import seed_everything

# name -> overrides of the run config; "elder_plain" is ELDER without the fast path.
VARIANTS = {"elder_plain": ["method=elder", "method.fast_path=false"], "elder": ["method=elder"]}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def time_stream(editor, batches) -> float:
    """Seconds per edit of ``editor`` over ``batches``."""
    start = time.perf_counter()
    for batch in batches:
        editor.edit(batch)
    return (time.perf_counter() - start) / sum(len(b) for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-edits", type=int, default=100)
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument(
        "--methods",
        default="elder_plain,elder",
        help=f"comma-separated method names or variants ({sorted(VARIANTS)})",
    )
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()

    names = args.methods.split(",")
    base_cfg = compose([f"model={args.model}", f"data.n_edits={args.n_edits}"])
    stream = instantiate(base_cfg.data)
    model = instantiate(base_cfg.model)
    rows, editors = [], {}
    for name in names:
        cfg = compose(
            [
                f"model={args.model}",
                f"data.n_edits={args.n_edits}",
                *VARIANTS.get(name, [f"method={name}"]),
            ]
        )
        seed_everything(cfg.seed)
        editor = instantiate(cfg.method, _partial_=True)(model=copy.deepcopy(model))
        s = time_stream(editor, stream.batches())
        editors[name] = editor
        rows.append((name, s))
        print(f"{name:>14}: {s:.3f} s/edit", flush=True)

    lines = [
        f"# Bench: s/edit over a {args.n_edits}-edit {stream.name} stream on {args.model}",
        "",
        f"- command: `python -m experiments.bench --n-edits {args.n_edits} "
        f"--model {args.model} --methods {args.methods}`",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()} "
        f"({platform.processor() or platform.machine()}), torch threads "
        f"{torch.get_num_threads()}",
        "",
        "| method | s/edit |",
        "|---|---|",
    ]
    lines += [f"| {name} | {s:.3f} |" for name, s in rows]
    if "elder" in editors and "elder_plain" in editors:
        fast, plain = editors["elder"], editors["elder_plain"]
        diff = max(
            (a - b).abs().max().item()
            for a, b in zip(fast.parameters(), plain.parameters(), strict=True)
        )
        ratio = dict(rows)["elder_plain"] / dict(rows)["elder"]
        same_codes = torch.equal(fast.codes, plain.codes)
        lines += [
            "",
            f"ELDER fast path speed-up: **{ratio:.2f}x** (plain / fast); largest "
            f"difference of trained parameters between the paths: {diff:.2e}; "
            f"identical allocation codes: {same_codes}",
        ]
    report = "\n".join(lines) + "\n"
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.model}_{args.n_edits}.md").write_text(report)


if __name__ == "__main__":
    main()
