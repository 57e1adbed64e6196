"""Evaluation of a stream: the unedited model (cached), the edited one after the stream
(teacher-forced, and free-decoded where asked), reliability curves, and each batch's
reliability right after its own edit (``Immediate``)."""

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
from experiments.data import EditStream, Probe, Probes
from experiments.free_decoding import Generations, decode, decoding_metrics
from experiments.results import keep_jsonl
from experiments.streams.stream import edit_probes

DESCRIPTIONS = {
    "edit": "edit prompts",
    "rephrase": "rephrases",
    "locality": "locality",
    "locality_alt": "neighborhood (new target)",
}
Predictions = dict[str, list[M.Prediction]]


def eval_probes(stream: EditStream) -> Probes:
    """The stream's probes, plus ``locality_alt`` (each locality prompt with the edit's new
    target) where the locality probes carry one: the neighborhood score compares the two."""
    probes = stream.probes()
    locality = probes["locality"]
    if locality and all(p.alt for p in locality):
        probes["locality_alt"] = [Probe(p.prompt, p.alt, p.case_id) for p in locality]
    return probes


def evaluate(forward, model: LoadedModel, probes: Probes, batch_size: int) -> Predictions:
    """Teacher-forced predictions of ``forward`` on every split of ``probes``."""
    return {
        split: M.predict(
            forward,
            model.tokenizer,
            [p.prompt for p in items],
            [p.target for p in items],
            batch_size,
            model.device,
            DESCRIPTIONS.get(split, split),
        )
        for split, items in probes.items()
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
    probes = eval_probes(stream)
    text = json.dumps({k: [[p.prompt, p.target] for p in v] for k, v in probes.items()})
    return {
        "model": model.name,
        "weights": cache.fingerprint(model.hf),
        "task": f"{stream.name}-{len(stream.records)}",
        "probes": hashlib.sha1(text.encode()).hexdigest()[:16],
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
    base = evaluate(base_forward(model), model, eval_probes(stream), bs)
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
    if "locality_alt" in edited:
        for prefix, preds in (("", edited), ("base_", base)):
            score = M.neighborhood_score(preds["locality"], preds["locality_alt"])
            result[f"{prefix}neighborhood_score"] = score
    return result


def evaluate_edited(
    editor: Editor,
    model: LoadedModel,
    stream: EditStream,
    eval_cfg: Any,
    base: Predictions,
    retention: Any | None,
    run_dir: Path,
) -> tuple[dict[str, float], list[dict]]:
    """The final evaluation of a run (``run.py`` and ``variant``): its metrics, with retention
    when there is an evaluator, and its prediction rows (``predictions.jsonl.gz``).

    ``eval_cfg`` is the run's ``eval`` config: ``batch_size`` and ``free_decoding``.
    """
    probes = eval_probes(stream)
    edited = evaluate(editor.forward, model, probes, eval_cfg.batch_size)
    result = edit_results(edited, base)
    answers: dict[str, Generations] = {}
    if eval_cfg.get("free_decoding", False):
        answers = decode(editor.generate, model, probes, eval_cfg.batch_size)
        result.update(decoding_metrics(answers, probes))
    if retention is not None:
        result.update(retention.evaluate(editor, run_dir))
    return result, prediction_rows(stream, edited, base, model.tokenizer, answers)


def prediction_rows(
    stream: EditStream,
    preds: Predictions,
    base: Predictions,
    tokenizer,
    answers: dict[str, Generations] | None = None,
) -> list[dict]:
    """One row per probe: the edited and unedited argmax answers, the free-decoded answer
    where there is one, and the method's report."""
    rows = []
    for split, probes in eval_probes(stream).items():
        generated = (answers or {}).get(split)
        for i, (probe, p, b) in enumerate(zip(probes, preds[split], base[split], strict=True)):
            row = {
                "split": split,
                "case_id": probe.case_id,
                "prompt": probe.prompt,
                "target": probe.target,
                "pred": tokenizer.decode(p.pred),
                "base_pred": tokenizer.decode(b.pred),
                "exact": p.exact,
                "token_acc": p.token_acc,
                **p.info,
            }
            if generated is not None:
                row["generated"] = generated[i].text
            rows.append(row)
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
        probes = {"edit": edit_probes(records)}
        preds = evaluate(editor.forward, self.model, probes, self.bs)["edit"]
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


class Immediate:
    """Each batch's reliability right after its own edit (LEMoE's "immediate", EasyEdit's
    sequential mode), beside the end-of-stream numbers (``eval.immediate``).

    One line per batch in ``<run folder>/immediate.jsonl``; on resume the lines past the
    restored checkpoint are dropped, as those batches are edited again.
    """

    FILE = "immediate.jsonl"

    def __init__(self, on: bool, run_dir: Path, model: LoadedModel, bs: int) -> None:
        self.on, self.model, self.bs = on, model, bs
        self.file = run_dir / self.FILE
        self.seconds = 0.0  # evaluation time, kept out of the editing time

    def restore(self, batches_done: int) -> None:
        if self.on:
            keep_jsonl(self.file, lambda row: row["batch"] < batches_done)

    def after_batch(self, editor: Editor, step: int, batch: list[EditRecord]) -> None:
        if not self.on:
            return
        start = time.perf_counter()
        probes = {"edit": edit_probes(batch)}
        preds = evaluate(editor.forward, self.model, probes, self.bs)["edit"]
        row = {
            "batch": step,
            "edits": len(preds),
            "exact": sum(p.exact for p in preds),
            "token_acc": sum(p.token_acc for p in preds),
        }
        with self.file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.seconds += time.perf_counter() - start

    def results(self) -> dict[str, float]:
        """``reliability_immediate`` (exact) and ``_tok``: means over every edit of the stream."""
        if not self.on or not self.file.is_file():
            return {}
        rows = [json.loads(line) for line in self.file.read_text().splitlines() if line]
        n = sum(r["edits"] for r in rows)
        if not n:
            return {}
        return {
            "reliability_immediate": sum(r["exact"] for r in rows) / n,
            "reliability_immediate_tok": sum(r["token_acc"] for r in rows) / n,
        }
