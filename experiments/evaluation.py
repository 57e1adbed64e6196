"""Teacher-forced evaluation of a stream: the unedited model (cached), the edited one, curves."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from elder.editor import Editor, EditRecord, Encoded, ForwardOutput
from elder.models import LoadedModel
from experiments import cache
from experiments import metrics as M
from experiments.data import EditStream
from experiments.results import keep_jsonl

SPLITS = (  # split, prompt field, target field of an EditRecord
    ("edit", "prompt", "target"),
    ("rephrase", "rephrase", "target"),
    ("locality", "loc_prompt", "loc_target"),
)
DESCRIPTIONS = {"edit": "edit prompts", "rephrase": "rephrases", "locality": "locality"}
Predictions = dict[str, list[M.Prediction]]


def evaluate(
    forward, model: LoadedModel, records: list[EditRecord], batch_size: int, splits=SPLITS
) -> Predictions:
    """Teacher-forced predictions on the edit, rephrase and locality prompts of a stream."""
    return {
        split: M.predict(
            forward,
            model.tokenizer,
            [getattr(r, prompt) for r in records],
            [getattr(r, target) for r in records],
            batch_size,
            model.device,
            DESCRIPTIONS[split],
        )
        for split, prompt, target in splits
    }


def base_forward(model: LoadedModel):
    """The unedited model (an editor's construction must leave its function unchanged)."""

    def forward(enc: Encoded) -> ForwardOutput:
        return ForwardOutput(
            model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        )

    return forward


def base_key(model: LoadedModel, stream: EditStream, bs: int) -> dict[str, Any]:
    """Everything the unedited model's predictions on a stream depend on.

    Call before any editor wraps the model: it fingerprints the untouched weights.
    """
    records = stream.records
    text = json.dumps([[getattr(r, f) for _, p, t in SPLITS for f in (p, t)] for r in records])
    return {
        "model": model.name,
        "weights": cache.fingerprint(model.hf),
        "task": f"{stream.name}-{len(records)}",
        "records": hashlib.sha1(text.encode()).hexdigest()[:16],
        "batch_size": bs,
        "dtype": str(next(model.hf.parameters()).dtype),
        "device": model.device.type,
    }


def base_predictions(
    model: LoadedModel, stream: EditStream, bs: int, key: dict[str, Any], cache_dir: str | None
) -> Predictions:
    """The unedited model's predictions, read from ``cache_dir`` when another run made them."""
    stored = cache.load(cache_dir, key) if cache_dir else None
    if stored is not None:
        return {k: [M.Prediction(**p) for p in v] for k, v in stored[0].items()}
    base = evaluate(base_forward(model), model, stream.records, bs)
    if cache_dir:
        cache.save(cache_dir, key, [{k: [asdict(p) for p in v] for k, v in base.items()}])
    return base


def edit_results(edited: Predictions, base: Predictions) -> dict[str, float]:
    """The edit metrics of the edited model, and the unedited model's as ``base_*``."""
    result = M.edit_metrics(
        edited["edit"], edited["rephrase"], edited["locality"], base["locality"]
    )
    base_metrics = M.edit_metrics(
        base["edit"], base["rephrase"], base["locality"], base["locality"]
    )
    result.update({f"base_{k}": v for k, v in base_metrics.items() if k != "locality"})
    return result


def evaluate_edited(
    editor: Editor,
    model: LoadedModel,
    records: list[EditRecord],
    batch_size: int,
    base: Predictions,
    retention: Any | None,
    run_dir: Path,
) -> tuple[Predictions, dict[str, float]]:
    """The edited model's predictions and metrics (with retention when there is an evaluator)."""
    edited = evaluate(editor.forward, model, records, batch_size)
    result = edit_results(edited, base)
    if retention is not None:
        result.update(retention.evaluate(editor, run_dir))
    return edited, result


def prediction_rows(records, preds: Predictions, base: Predictions, tokenizer) -> list[dict]:
    """One row per prompt: the edited and unedited argmax answers, and the method's report."""
    rows = []
    for split, prompt_of, target_of in SPLITS:
        for r, p, b in zip(records, preds[split], base[split], strict=True):
            rows.append(
                {
                    "split": split,
                    "case_id": r.case_id,
                    "prompt": getattr(r, prompt_of),
                    "target": getattr(r, target_of),
                    "pred": tokenizer.decode(p.pred),
                    "base_pred": tokenizer.decode(b.pred),
                    "exact": p.exact,
                    "token_acc": p.token_acc,
                    **p.info,
                }
            )
    return rows


class Curve:
    """Reliability on the edits so far, every ``every`` edits (``eval.every``) and at the end.

    Points go to ``<run folder>/curve.jsonl`` as they are measured; on resume the points past
    the restored stream position are dropped, so a killed run's curve continues cleanly.
    """

    FILE = "curve.jsonl"

    def __init__(self, every: int | None, run_dir: Path, model: LoadedModel, bs: int) -> None:
        if every is not None and every < 1:
            raise ValueError(f"eval.every must be a positive number of edits or null, got {every}")
        self.every, self.model, self.bs = every, model, bs
        self.file = run_dir / self.FILE
        self.seconds = 0.0  # evaluation time, kept out of the editing time

    def restore(self, edits_done: int) -> None:
        if self.every:
            keep_jsonl(self.file, lambda point: point["edits"] <= edits_done)

    def after_batch(
        self, editor: Editor, records: list[EditRecord], before: int, last: bool, seconds: float
    ) -> dict[str, Any] | None:
        """A point if this batch (edits ``before``..``len(records)``) crossed a mark or ended.

        ``records`` are the edits so far; ``seconds`` the editing time so far.
        """
        done = len(records)
        if not self.every or (done // self.every == before // self.every and not last):
            return None
        start = time.perf_counter()
        preds = evaluate(editor.forward, self.model, records, self.bs, SPLITS[:1])["edit"]
        point = {
            "edits": done,
            "reliability": M.mean([p.exact for p in preds]),
            "reliability_tok": M.mean([p.token_acc for p in preds]),
            "extra_params": editor.extra_params(),
            "edit_seconds": round(seconds, 2),
        }
        with self.file.open("a") as f:
            f.write(json.dumps(point) + "\n")
        self.seconds += time.perf_counter() - start
        return point
