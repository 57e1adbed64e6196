"""Time the 8 retention tasks on the unedited model: ``python -m experiments.bench_retention``.

Defaults: 200 inputs per task (conll03: 200 sentences, 4 prompts each) on smollm2_135m, the
batch size of ``conf/eval/full.yaml``, no cache. Prints per-task wall and CPU seconds and the
task score; the target is <= 10 minutes in all on the 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from hydra.utils import instantiate

from experiments.configs import compose
from experiments.retention import prompts as P
from experiments.retention.evaluator import sample
from experiments.retention.generate import base_generate, generate_all
from experiments.retention.metrics import SCORERS
from experiments.retention.tasks import TASKS, load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--n", type=int, default=200, help="inputs per task")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ELDER_DATA_DIR", os.path.abspath("../shared/data"))

    model = instantiate(compose([f"model={args.model}"]).model)
    generate = base_generate(model)
    print(f"{'task':<12}{'prompts':>8}{'wall_s':>9}{'cpu_s':>9}{'s/prompt':>10}  score")
    wall_total = cpu_total = 0.0
    for task in args.tasks:
        records = load_task(task)
        records = [records[i] for i in sample(len(records), args.n, 0)]
        prompts = P.render(task, records)
        spec = P.SPECS[task]
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = generate_all(
            generate,
            model,
            [p.text for p in prompts],
            spec.max_new_tokens,
            spec.stop,
            args.batch_size,
            task,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall_total, cpu_total = wall_total + wall, cpu_total + cpu
        scores = SCORERS[task](records, prompts, [P.clean(task, g.text) for g in outputs])
        shown = " ".join(f"{k}={v:.3f}" for k, v in scores.items())
        per = wall / len(prompts)
        print(f"{task:<12}{len(prompts):>8}{wall:>9.1f}{cpu:>9.1f}{per:>10.3f}  {shown}")
    print(f"{'total':<12}{'':>8}{wall_total:>9.1f}{cpu_total:>9.1f}")


if __name__ == "__main__":
    main()
