"""The experiment runner: edit the model with the stream, then evaluate once.

It knows nothing of any method: the method comes in through ``cfg.method._target_`` and is
used only through the :class:`elder.editor.Editor` interface.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from elder.editor import Editor, EditRecord, Encoded, ForwardOutput
from elder.encoding import split_ids
from elder.models import LoadedModel
from experiments import metrics as M
from experiments.data import EditStream
from experiments.results import append_row, git_commit, machine, write_json, write_jsonl


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_lengths(stream: EditStream, model: LoadedModel) -> None:
    """Every prompt + target must fit the model's context; fail naming the record."""
    limit = model.max_length
    for i, r in enumerate(stream.records):
        for kind, prompt, target in (
            ("edit", r.prompt, r.target),
            ("rephrase", r.rephrase, r.target),
            ("locality", r.loc_prompt, r.loc_target),
        ):
            p, t = split_ids(model.tokenizer, prompt, target)
            if len(p) + len(t) > limit:
                raise ValueError(
                    f"{stream.name} record {i} ({kind}): prompt + target is "
                    f"{len(p) + len(t)} tokens, over {model.name}'s context "
                    f"of {limit}"
                )


def evaluate(
    forward, model: LoadedModel, records: list[EditRecord], batch_size: int
) -> dict[str, list[M.Prediction]]:
    """Teacher-forced predictions on the edit, rephrase and locality prompts of a stream."""
    args = (model.tokenizer,)
    return {
        "edit": M.predict(
            forward,
            *args,
            [r.prompt for r in records],
            [r.target for r in records],
            batch_size,
            model.device,
            "edit prompts",
        ),
        "rephrase": M.predict(
            forward,
            *args,
            [r.rephrase for r in records],
            [r.target for r in records],
            batch_size,
            model.device,
            "rephrases",
        ),
        "locality": M.predict(
            forward,
            *args,
            [r.loc_prompt for r in records],
            [r.loc_target for r in records],
            batch_size,
            model.device,
            "locality",
        ),
    }


def base_forward(model: LoadedModel):
    """The unedited model (an editor's construction must leave its function unchanged)."""

    def forward(enc: Encoded) -> ForwardOutput:
        return ForwardOutput(
            model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        )

    return forward


def prediction_rows(records, preds, base, tokenizer) -> list[dict[str, Any]]:
    rows = []
    for split, prompt_of, target_of in (
        ("edit", "prompt", "target"),
        ("rephrase", "rephrase", "target"),
        ("locality", "loc_prompt", "loc_target"),
    ):
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


def retention_evaluator(cfg: DictConfig, model: LoadedModel):
    """The retention evaluator of ``eval.retention`` (None when the eval config has none)."""
    if not cfg.eval.get("retention"):
        return None
    return instantiate(cfg.eval.retention, _partial_=True)(model=model)


def run(cfg: DictConfig, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """One experiment: validate, evaluate the base model, edit, evaluate, write results."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    stream: EditStream = instantiate(cfg.data)  # fails on a missing or malformed data file
    model: LoadedModel = instantiate(cfg.model)
    check_lengths(stream, model)
    retention = retention_evaluator(cfg, model)  # unedited task outputs, before any editor
    # _partial_: hydra would turn the LoadedModel dataclass into a config if passed directly
    editor: Editor = instantiate(cfg.method, _partial_=True)(model=model)  # checks layers
    method = editor.name

    stamp = datetime.now(timezone.utc)
    run_id = cfg.run_name or (
        f"{stamp:%Y%m%d-%H%M%S}_{method}_{model.name}_{stream.name}_{uuid.uuid4().hex[:6]}"
    )
    run_dir = Path(cfg.results_dir) / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger = instantiate(cfg.logger)
    logger.start(run_id, run_dir, resolved)

    bs = cfg.eval.batch_size
    base = evaluate(base_forward(model), model, stream.records, bs)

    start = time.perf_counter()
    batches = stream.batches()
    for step, batch in enumerate(tqdm(batches, desc=f"editing ({method})", unit="batch")):
        stats = editor.edit(batch)
        logger.log({f"train/{k}": v for k, v in stats.items()}, step=step)
    edit_seconds = time.perf_counter() - start

    edited = evaluate(editor.forward, model, stream.records, bs)
    result = M.edit_metrics(
        edited["edit"], edited["rephrase"], edited["locality"], base["locality"]
    )
    base_metrics = M.edit_metrics(
        base["edit"], base["rephrase"], base["locality"], base["locality"]
    )
    result.update({f"base_{k}": v for k, v in base_metrics.items() if k != "locality"})
    if retention is not None:
        result.update(retention.evaluate(editor, run_dir))
    row = {
        "run_id": run_id,
        "timestamp": stamp.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine(),
        "method": method,
        "model": model.name,
        "data": stream.name,
        "n_edits": len(stream.records),
        "seed": cfg.seed,
        **{k: round(v, 6) for k, v in result.items()},
        "s_per_edit": round(edit_seconds / len(stream.records), 4),
        "extra_params": editor.extra_params(),
        "wall_s": round(edit_seconds, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "protocol": cfg.eval.protocol,
        "overrides": " ".join(overrides),
    }
    write_json(run_dir / "metrics.json", row)
    write_jsonl(
        run_dir / "predictions.jsonl",
        prediction_rows(stream.records, edited, base, model.tokenizer),
    )
    append_row(Path(cfg.results_dir) / "runs.csv", row)
    logger.log({f"eval/{k}": v for k, v in result.items()}, step=len(batches))
    logger.finish(row)
    return row
