"""The retention evaluator: unedited outputs before the stream, edited outputs after it.

Test retention (the ELDER paper's number) is the mean of the 8 task scores. Agreement is the
share of a task's generations that are identical (after cleaning) before and after editing;
overall agreement is the mean over the 8 tasks, as retention is. Variant tasks (``gsm8k_gold``)
and variant metrics (``conll03_recall``, ``nq_contains``) are reported but not in the means.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elder.editor import Editor
from elder.models import LoadedModel
from experiments import cache
from experiments.metrics import mean
from experiments.results import write_json, write_jsonl
from experiments.retention import prompts as P
from experiments.retention.generate import Generation, base_generate, generate_all
from experiments.retention.metrics import SCORERS
from experiments.retention.tasks import TASKS, load_task


def sample(n_records: int, n_per_task: int | None, seed: int) -> list[int]:
    """Indices of a seeded subsample (in file order); all of them when n is None or too big."""
    if n_per_task is None or n_per_task >= n_records:
        return list(range(n_records))
    return sorted(random.Random(seed).sample(range(n_records), n_per_task))


class RetentionEvaluator:
    """Runs the general tasks on the unedited model now, and on an editor later."""

    def __init__(
        self,
        model: LoadedModel,
        tasks: Sequence[str] = TASKS,
        variants: Sequence[str] = (),
        n_per_task: int | None = None,
        sample_seed: int = 0,
        batch_size: int = 32,
        max_padding: float | None = 0.1,
        cache_dir: str | None = "results/cache/retention",
        max_new_tokens_cap: int | None = None,
    ) -> None:
        unknown = [t for t in [*tasks, *variants] if t not in P.SPECS]
        if unknown:
            raise ValueError(f"unknown retention tasks {unknown}; known: {sorted(P.SPECS)}")
        if n_per_task is not None and n_per_task < 1:
            raise ValueError(f"eval.retention.n_per_task must be >= 1 or null, got {n_per_task}")
        self.model, self.tasks, self.variants = model, list(tasks), list(variants)
        if max_padding is not None and max_padding < 0:
            raise ValueError(f"eval.retention.max_padding must be >= 0 or null, got {max_padding}")
        self.batch_size, self.max_padding, self.cache_dir = batch_size, max_padding, cache_dir
        self.cap = max_new_tokens_cap
        self.records: dict[str, list[dict]] = {}
        self.ids: dict[str, list[int]] = {}
        self.prompts: dict[str, list[P.Prompt]] = {}
        for task in self.all_tasks:
            records = load_task(task)
            self.ids[task] = sample(len(records), n_per_task, sample_seed)
            self.records[task] = [records[i] for i in self.ids[task]]
            self.prompts[task] = P.render(task, self.records[task])
        self.key = {
            "model": model.name,
            "weights": cache.fingerprint(model.hf),  # before any editor wraps a module
            "prompt_version": P.PROMPT_VERSION,
            "n_per_task": n_per_task,
            "sample_seed": sample_seed,
            "batch_size": batch_size,
            "max_padding": max_padding,
            "max_new_tokens_cap": max_new_tokens_cap,
            "dtype": str(next(model.hf.parameters()).dtype),
            "device": model.device.type,
        }
        self.base: dict[str, list[Generation]] = {}
        self.base_seconds = 0.0

    def prepare(self) -> None:
        """Generate (or read from the cache) the unedited outputs; call before any edit."""
        start = time.perf_counter()
        self.base = {task: self._base_outputs(task) for task in self.all_tasks}
        self.base_seconds = time.perf_counter() - start

    @property
    def all_tasks(self) -> list[str]:
        return self.tasks + [v for v in self.variants if v not in self.tasks]

    def _generate(self, generate, task: str, desc: str) -> list[Generation]:
        spec = P.SPECS[task]
        texts = [p.text for p in self.prompts[task]]
        n_new = spec.max_new_tokens if self.cap is None else min(spec.max_new_tokens, self.cap)
        return generate_all(
            generate, self.model, texts, n_new, spec.stop, self.batch_size, desc, self.max_padding
        )

    def _base_outputs(self, task: str) -> list[Generation]:
        key = {**self.key, "task": task}
        if self.cache_dir is not None:
            cached = cache.load(self.cache_dir, key)
            if cached is not None:
                return [Generation(**g) for g in cached]
        outputs = self._generate(base_generate(self.model), task, f"{task} (unedited)")
        if self.cache_dir is not None:
            cache.save(self.cache_dir, key, [dataclasses.asdict(g) for g in outputs])
        return outputs

    def score(self, task: str, outputs: list[Generation]) -> dict[str, float]:
        """The task's metrics (its own name first, then variants) on cleaned outputs."""
        texts = [P.clean(task, g.text) for g in outputs]
        return SCORERS[task](self.records[task], self.prompts[task], texts)

    def base_metrics(self) -> dict[str, float]:
        """Retention of the unedited model: ``base_retention`` and per task."""
        scores = {t: self.score(t, self.base[t]) for t in self.all_tasks}
        out = {"base_retention": mean([scores[t][t] for t in self.tasks])}
        for t in self.all_tasks:
            out.update({f"base_retention_{k}": v for k, v in scores[t].items()})
        return out

    def evaluate(self, editor: Editor, run_dir: str | Path | None = None) -> dict[str, float]:
        """Scores, agreement and the method's info rates on the task inputs, after editing.

        Writes every generation (edited and unedited) to ``<run_dir>/retention.jsonl``.
        """
        if not self.base:
            raise RuntimeError("RetentionEvaluator.prepare() must run before the first edit")
        start = time.perf_counter()
        result: dict[str, float] = {}
        agreement: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        info: dict[str, dict[str, float]] = {}
        for task in self.all_tasks:
            edited = self._generate(editor.generate, task, f"{task} ({editor.name})")
            scores = self.score(task, edited)
            same = [
                P.clean(task, e.text) == P.clean(task, b.text)
                for e, b in zip(edited, self.base[task], strict=True)
            ]
            agreement[task] = mean([float(s) for s in same])
            result.update({f"retention_{k}": v for k, v in scores.items()})
            result[f"agreement_{task}"] = agreement[task]
            for name in edited[0].info if edited else ():
                info.setdefault(name, {})[task] = mean([g.info[name] for g in edited])
            for p, e, b, s in zip(self.prompts[task], edited, self.base[task], same, strict=True):
                rows.append(
                    {
                        "task": task,
                        "record": self.ids[task][p.record],
                        "kind": p.kind,
                        "output": P.clean(task, e.text),
                        "base_output": P.clean(task, b.text),
                        "agree": s,
                        "truncated": e.truncated,
                        **e.info,
                    }
                )
        result["retention"] = mean([result[f"retention_{t}"] for t in self.tasks])
        result["agreement"] = mean([agreement[t] for t in self.tasks])
        for name, per_task in info.items():
            result[f"{name}_tasks"] = mean([per_task[t] for t in self.tasks if t in per_task])
            result.update({f"{name}_{t}": v for t, v in per_task.items()})
        result.update(self.base_metrics())
        result["retention_n"] = float(sum(len(self.records[t]) for t in self.tasks))
        result["retention_s"] = time.perf_counter() - start
        result["retention_base_s"] = self.base_seconds  # 0-ish when the cache had them
        if run_dir is not None:
            write_jsonl(Path(run_dir) / "retention.jsonl", rows)
            write_json(
                Path(run_dir) / "retention.json",
                {**self.key, "tasks": self.tasks, "variants": self.variants, **result},
            )
        return dict(sorted(result.items(), key=lambda kv: _column_order(kv[0])))


def _column_order(name: str) -> tuple[int, str]:
    """Headline columns first (retention, agreement), then per task, then the rest."""
    head = ["retention", "agreement", "base_retention"]
    return (head.index(name), "") if name in head else (len(head), name)
