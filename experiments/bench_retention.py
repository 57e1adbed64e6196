"""Time the 8 retention tasks on the unedited model: ``python -m experiments.bench_retention``.

Defaults: 200 inputs per task (conll03: 200 sentences, 4 prompts each) on smollm2_135m, the
batching of ``conf/eval/full.yaml``, no cache. Prints per-task wall and CPU seconds and the
task score; the target is <= 10 minutes in all on the 2-core CPU machine. ``--batching 16
32:0.1`` times each task under each batching in turn (side by side), counts the outputs that
match the first one's, and prints the speed-ups; ``--dtypes float32 bfloat16`` does the same
for the model's dtype (one copy of the model per dtype). The same table goes to
``results/bench/retention_<model>_<n>.md``, rewritten after each task.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra.utils import instantiate

from elder.models import LoadedModel
from experiments.configs import compose
from experiments.profiling import top_ops
from experiments.results import machine
from experiments.retention import prompts as P
from experiments.retention.evaluator import sample
from experiments.retention.generate import GenerateFn, base_generate, batches, generate_all
from experiments.retention.metrics import SCORERS
from experiments.retention.tasks import TASKS, load_task

TARGET_S = 600.0  # issue 4: the 8 tasks at 200 inputs each within 10 minutes (2-core CPU)


Batching = tuple[int, float | None]  # (rows at most, max_padding or None: fixed batches)
Variant = tuple[str, Batching]  # (the model's dtype, the batching)


def parse_batching(text: str) -> Batching:
    """``ROWS`` (fixed batches of ROWS prompts) or ``ROWS:PAD`` (at most ROWS, padding <= PAD)."""
    rows, _, pad = text.partition(":")
    return int(rows), float(pad) if pad else None


def show(batching: Batching) -> str:
    rows, pad = batching
    return f"{rows}" if pad is None else f"{rows}:{pad:g}"


def show_variant(variant: Variant) -> str:
    dtype, batching = variant
    return f"{dtype} {show(batching)}"


def report(
    args: argparse.Namespace,
    lines: list[str],
    totals: dict[Variant, list[float]],
    done: bool,
    ops: list[str] | None = None,
) -> str:
    """The markdown report: how it was run, one row per task and variant (dtype, batching)
    timed so far, the totals, the speed-up of each variant over the first, and (``--profile``)
    where the CPU time went."""
    batchings = " ".join(show(b) for b in args.batching)
    head = [
        f"# Retention bench: {len(args.tasks)} tasks at {args.n} inputs each on {args.model}",
        "",
        f"- command: `python -m experiments.bench_retention --model {args.model} --n {args.n} "
        f"--batching {batchings} --dtypes {' '.join(args.dtypes)} --threads {args.threads} "
        f"--tasks {' '.join(args.tasks)}" + (" --profile`" if args.profile else "`"),
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()} "
        f"({platform.processor() or platform.machine()}), torch threads {args.threads}; "
        "unedited model, no cache",
        "- batching: `ROWS` = fixed batches of ROWS prompts; `ROWS:PAD` = at most ROWS, and "
        "padded work within 1+PAD of the real work (`experiments.retention.generate.batches`)",
        "",
        "| task | dtype | batching | prompts | batches | wall s | CPU s | s/prompt "
        "| same outputs | score |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tail = [""]
    for variant, (wall, cpu) in totals.items():
        verdict = ""
        if done and args.n == 200 and set(args.tasks) == set(TASKS):
            verdict = f", {'within' if wall <= TARGET_S else 'over'} the 10-minute target"
        tail.append(
            f"- {show_variant(variant)}: **{wall:.1f} s wall** ({wall / 60:.1f} min; "
            f"CPU {cpu:.1f} s){verdict}"
        )
    first = next(iter(totals.values()))[0]
    for variant, (wall, _) in list(totals.items())[1:] if done else []:
        tail.append(
            f"- speed-up of {show_variant(variant)} over {show_variant(next(iter(totals)))}: "
            f"**{first / wall:.2f}x** (wall)"
        )
    if ops:
        tail += ["", "Self CPU time by torch op (torch.profiler, all tasks):", ""]
        tail += ["| op | share |", "|---|---|", *ops]
    return "\n".join(head + lines + tail) + "\n"


def time_task(
    task: str,
    args: argparse.Namespace,
    model: LoadedModel,
    generate: GenerateFn,
    batching: Batching,
    reference: list[str] | None,
) -> tuple[str, list[str], float, float]:
    """Generate and score one task's sampled inputs with one model under one batching; prints
    its line and returns its report row, its cleaned outputs, and its wall and CPU seconds.
    ``reference``: the outputs of the first variant, counted against as "same outputs"."""
    records = load_task(task)
    records = [records[i] for i in sample(len(records), args.n, 0)]
    prompts = P.render(task, records)
    spec = P.SPECS[task]
    texts = [p.text for p in prompts]
    rows, pad = batching
    n_batches = len(
        batches([len(model.tokenizer(t).input_ids) for t in texts], spec.max_new_tokens, rows, pad)
    )
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = generate_all(generate, model, texts, spec.max_new_tokens, spec.stop, rows, task, pad)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cleaned = [P.clean(task, g.text) for g in outputs]
    scores = SCORERS[task](records, prompts, cleaned)
    shown = " ".join(f"{k}={v:.3f}" for k, v in scores.items())
    same = sum(a == b for a, b in zip(reference or cleaned, cleaned, strict=True))
    per = wall / len(prompts)
    dtype = str(next(model.hf.parameters()).dtype).removeprefix("torch.")
    print(
        f"{task:<12}{dtype:>10}{show(batching):>9}{len(prompts):>8}{n_batches:>8}{wall:>9.1f}"
        f"{cpu:>9.1f}{per:>10.3f}{same:>6}  {shown}"
    )
    row = (
        f"| {task} | {dtype} | {show(batching)} | {len(prompts)} | {n_batches} | {wall:.1f} | "
        f"{cpu:.1f} | {per:.3f} | {same}/{len(prompts)} | {shown} |"
    )
    return row, cleaned, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--n", type=int, default=200, help="inputs per task")
    parser.add_argument(
        "--batching",
        nargs="+",
        type=parse_batching,
        default=None,
        help="ROWS or ROWS:PAD, one or more, timed side by side per task "
        "(default: eval.retention's batch_size and max_padding)",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=None,
        help="float32, bfloat16, ...: the model's dtype, one or more, timed side by side per "
        "task (default: the model config's)",
    )
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default="results/bench")
    parser.add_argument(
        "--profile", action="store_true", help="also report the CPU time per torch op"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = compose([f"model={args.model}", "eval=full"])
    if args.batching is None:
        args.batching = [(cfg.eval.retention.batch_size, cfg.eval.retention.max_padding)]
    args.dtypes = args.dtypes or [cfg.model.dtype]
    models = {d: instantiate(cfg.model, dtype=d) for d in args.dtypes}
    generators = {d: base_generate(m) for d, m in models.items()}
    print(
        f"{'task':<12}{'dtype':>10}{'batching':>9}{'prompts':>8}{'batches':>8}{'wall_s':>9}"
        f"{'cpu_s':>9}{'s/prompt':>10}{'same':>6}  score"
    )
    variants = [(d, b) for d in args.dtypes for b in args.batching]
    totals = {v: [0.0, 0.0] for v in variants}
    out = Path(args.out) / f"retention_{args.model}_{args.n}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    profile = torch.profiler.profile() if args.profile else contextlib.nullcontext()
    with profile:
        for task in args.tasks:
            reference = None
            for dtype, batching in variants:
                model, generate = models[dtype], generators[dtype]
                timed = time_task(task, args, model, generate, batching, reference)
                row, cleaned, wall, cpu = timed
                reference = reference or cleaned
                totals[dtype, batching][0] += wall
                totals[dtype, batching][1] += cpu
                lines.append(row)
                out.write_text(report(args, lines, totals, done=False))
    for (dtype, batching), (wall, cpu) in totals.items():
        print(f"{'total':<12}{dtype:>10}{show(batching):>9}{'':>16}{wall:>9.1f}{cpu:>9.1f}")
    ops = top_ops(profile) if args.profile else None
    out.write_text(report(args, lines, totals, done=True, ops=ops))
    print(f"report: {out}")


if __name__ == "__main__":
    main()
