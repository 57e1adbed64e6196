"""`make bench`: seconds per edit of each method on the same stream, measured side by side.

Three methods also run twice, computing the same edits two ways: ELDER on the plain
full-forward path and on the fast path (cached frozen prefix, logits at target positions only);
GRACE training its values one edit after another and batched; ROME fitting v* with full
forwards and with the tokens before each row's subject frozen. Each pair agrees up to float
rounding, which compounds over the stream's steps; the bench prints the speed-up, the largest
difference of the trained tensors and (ELDER) whether the stored allocation codes agree.

    python -m experiments.bench --n-edits 100 --methods elder_plain,elder   # default: all
    python -m experiments.bench --n-edits 20 --methods grace_one_by_one,grace
    python -m experiments.bench --n-edits 5 --methods rome_plain,rome

Every method edits a fresh copy of the same model with the same 100 edits. The report is
rewritten after each method, so a long bench (ROME on a CPU) keeps what it has timed.
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

from experiments.configs import compose
from experiments.results import machine
from experiments.runner import seed_everything

# name -> overrides of the run config; each pair of PAIRS is one method computed two ways.
VARIANTS = {
    "elder_plain": ["method=elder", "method.fast_path=false"],
    "elder": ["method=elder"],
    "elder_plus": ["+preset=elder_plus"],  # ELDER+ (issue #24), beside faithful ELDER
    "grace_one_by_one": ["method=grace", "method.batched=false"],
    "grace": ["method=grace"],
    "rome_plain": ["method=rome", "method.fast_path=false"],
    "rome": ["method=rome"],
    "alphaedit_plain": ["method=alphaedit", "method.fast_path=false"],
    "alphaedit": ["method=alphaedit"],
}
PAIRS = {
    ("elder_plain", "elder"): "ELDER fast path",
    ("grace_one_by_one", "grace"): "GRACE batched values",
    ("rome_plain", "rome"): "ROME frozen past",
    ("alphaedit_plain", "alphaedit"): "AlphaEdit frozen past",
}


def trained(editor) -> dict[str, torch.Tensor]:
    """What an editor has trained or stored (its ``state()`` tensors, optimizer moments left
    out), on the CPU, to compare two ways of editing."""
    tensors, _ = editor.state()
    return {k: t.detach().cpu() for k, t in tensors.items() if not k.startswith("optimizer.")}


def time_stream(editor, batches) -> float:
    """Seconds per edit of ``editor`` over ``batches``."""
    start = time.perf_counter()
    for batch in batches:
        editor.edit(batch)
    editor.flush()  # edits a method still holds back belong to the stream
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # queued GPU work belongs to the edits
    return (time.perf_counter() - start) / sum(len(b) for b in batches)


ALL = (
    "elder_plain,elder,elder_plus,grace_one_by_one,grace,serac,defer,melo,lemoe,lora,ft_l,rome,wilke,"
    "t_patcher,alphaedit,wise"
)


def report(args, stream_name: str, rows: list[tuple[str, float, int]], editors: dict) -> str:
    """The bench's markdown: one row per method timed so far, then the ELDER path check."""
    lines = [
        f"# Bench: s/edit over a {args.n_edits}-edit {stream_name} stream on {args.model}",
        "",
        f"- command: `python -m experiments.bench --n-edits {args.n_edits} "
        f"--model {args.model} --methods {args.methods}`",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()} "
        f"({platform.processor() or platform.machine()}), torch threads "
        f"{torch.get_num_threads()}",
        "",
        "| method | s/edit | extra params |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s:.3f} | {params:,} |" for name, s, params in rows]
    seconds = {name: s for name, s, _ in rows}
    for (slow, fast), label in PAIRS.items():
        if slow not in editors or fast not in editors:
            continue
        a, b = editors[fast], editors[slow]
        floats = [k for k in a if a[k].is_floating_point()]
        diff = max(((a[k] - b[k]).abs().max().item() for k in floats if a[k].numel()), default=0)
        line = (
            f"{label} speed-up: **{seconds[slow] / seconds[fast]:.2f}x** ({slow} / {fast}); "
            f"largest difference of trained tensors between them: {diff:.2e}"
        )
        if "codes" in a:  # ELDER's stored allocation codes (uint8, bit-packed)
            line += f"; identical allocation codes: {torch.equal(a['codes'], b['codes'])}"
        lines += ["", line]
    timed = {name for name, _, _ in rows}
    if timed & {"rome", "alphaedit", "wilke"}:
        lines += [
            "",
            "ROME's, WilKE's and AlphaEdit's s/edit include their one-time work for the stream: "
            "the random prefixes and, unless cached under `stats_dir`, the second moment C of "
            "their layers' keys (AlphaEdit: and its null-space projections).",
        ]
    if "t_patcher" in timed:
        lines += [
            "",
            "T-Patcher's s/edit includes building its memory sets once per stream: the FFN "
            "inputs of `2 x memory_size` CounterFact cases.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-edits", type=int, default=100)
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument(
        "--methods",
        default=ALL,
        help=f"comma-separated method names or variants ({sorted(VARIANTS)})",
    )
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()

    names = args.methods.split(",")
    base_cfg = compose([f"model={args.model}", f"data.n_edits={args.n_edits}"])
    stream = instantiate(base_cfg.data)
    model = instantiate(base_cfg.model)
    out = Path(args.out) / f"{args.model}_{args.n_edits}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, int]] = []
    editors = {}  # the trained tensors of each variant in PAIRS, for their comparison
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
        editor.check_stream(stream.records)  # as the runner does, before any edit
        s = time_stream(editor, stream.batches())
        if name in VARIANTS:  # keep what is compared, not the model copy (one at a time)
            editors[name] = trained(editor)
        rows.append((name, s, editor.extra_params()))
        print(f"{name:>14}: {s:.3f} s/edit", flush=True)
        out.write_text(report(args, stream.name, rows, editors))  # a long bench keeps each row
        del editor
    print(out.read_text())


if __name__ == "__main__":
    main()
