"""Time the 8 retention tasks on the unedited model: ``python -m experiments.bench_retention``.

Defaults: 200 inputs per task (conll03: 200 sentences, 4 prompts each) on smollm2_135m, the
batch size of ``conf/eval/full.yaml``, no cache. Prints per-task wall and CPU seconds and the
task score; the target is <= 10 minutes in all on the 2-core CPU machine. The same table goes
to ``results/bench/retention_<model>_<n>.md``, rewritten after each task.
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
from experiments.results import machine
from experiments.retention import prompts as P
from experiments.retention.evaluator import sample
from experiments.retention.generate import GenerateFn, base_generate, generate_all
from experiments.retention.metrics import SCORERS
from experiments.retention.tasks import TASKS, load_task

TARGET_S = 600.0  # issue 4: the 8 tasks at 200 inputs each within 10 minutes (2-core CPU)


def top_ops(profile: torch.profiler.profile, n: int = 5) -> list[str]:
    """Markdown rows: the ``n`` torch ops with the most self CPU time, as shares of all of it."""
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:n]
    return [f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f}% |" for e in top]


def report(
    args: argparse.Namespace,
    lines: list[str],
    wall: float,
    cpu: float,
    done: bool,
    ops: list[str] | None = None,
) -> str:
    """The markdown report: how it was run, one row per task timed so far, the total, and
    (``--profile``) where the CPU time went."""
    head = [
        f"# Retention bench: {len(args.tasks)} tasks at {args.n} inputs each on {args.model}",
        "",
        f"- command: `python -m experiments.bench_retention --model {args.model} --n {args.n} "
        f"--batch-size {args.batch_size} --threads {args.threads} --tasks {' '.join(args.tasks)}"
        + (" --profile`" if args.profile else "`"),
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()} "
        f"({platform.processor() or platform.machine()}), torch threads {args.threads}; "
        "unedited model, no cache",
        "",
        "| task | prompts | wall s | CPU s | s/prompt | score |",
        "|---|---|---|---|---|---|",
    ]
    tail = [""]
    if done and args.n == 200 and set(args.tasks) == set(TASKS):
        verdict = "within" if wall <= TARGET_S else "over"
        tail.append(
            f"Total: **{wall:.1f} s wall** ({wall / 60:.1f} min; CPU {cpu:.1f} s), {verdict} "
            f"the {TARGET_S / 60:.0f}-minute target."
        )
    elif done:
        tail.append(f"Total: **{wall:.1f} s wall** (CPU {cpu:.1f} s).")
    if ops:
        tail += ["", "Self CPU time by torch op (torch.profiler, all tasks):", ""]
        tail += ["| op | share |", "|---|---|", *ops]
    return "\n".join(head + lines + tail) + "\n"


def time_task(
    task: str, args: argparse.Namespace, model: LoadedModel, generate: GenerateFn
) -> tuple[str, float, float]:
    """Generate and score one task's sampled inputs; prints its line and returns its report
    row with its wall and CPU seconds."""
    records = load_task(task)
    records = [records[i] for i in sample(len(records), args.n, 0)]
    prompts = P.render(task, records)
    spec = P.SPECS[task]
    wall, cpu = time.perf_counter(), time.process_time()
    texts = [p.text for p in prompts]
    outputs = generate_all(
        generate, model, texts, spec.max_new_tokens, spec.stop, args.batch_size, task
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    scores = SCORERS[task](records, prompts, [P.clean(task, g.text) for g in outputs])
    shown = " ".join(f"{k}={v:.3f}" for k, v in scores.items())
    per = wall / len(prompts)
    print(f"{task:<12}{len(prompts):>8}{wall:>9.1f}{cpu:>9.1f}{per:>10.3f}  {shown}")
    return f"| {task} | {len(prompts)} | {wall:.1f} | {cpu:.1f} | {per:.3f} | {shown} |", wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--n", type=int, default=200, help="inputs per task")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default="results/bench")
    parser.add_argument(
        "--profile", action="store_true", help="also report the CPU time per torch op"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ELDER_DATA_DIR", os.path.abspath("../shared/data"))

    model = instantiate(compose([f"model={args.model}"]).model)
    generate = base_generate(model)
    print(f"{'task':<12}{'prompts':>8}{'wall_s':>9}{'cpu_s':>9}{'s/prompt':>10}  score")
    wall_total = cpu_total = 0.0
    out = Path(args.out) / f"retention_{args.model}_{args.n}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    profile = torch.profiler.profile() if args.profile else contextlib.nullcontext()
    with profile:
        for task in args.tasks:
            row, wall, cpu = time_task(task, args, model, generate)
            wall_total, cpu_total = wall_total + wall, cpu_total + cpu
            rows.append(row)
            out.write_text(report(args, rows, wall_total, cpu_total, done=False))
    print(f"{'total':<12}{'':>8}{wall_total:>9.1f}{cpu_total:>9.1f}")
    ops = top_ops(profile) if args.profile else None
    out.write_text(report(args, rows, wall_total, cpu_total, done=True, ops=ops))
    print(f"report: {out}")


if __name__ == "__main__":
    main()
