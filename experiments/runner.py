"""The experiment runner: edit the model with the stream, then evaluate once.

It knows nothing of any method: the method comes in through ``cfg.method._target_`` and is
used only through the :class:`elder.editor.Editor` interface.
"""

from __future__ import annotations

import random
import shlex
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from elder.editor import Editor
from elder.encoding import split_ids
from elder.models import LoadedModel
from elder.saved import SAVED_DIR, save
from experiments.checkpoint import Checkpoints, lock_run, resume_config, supports_state
from experiments.data import EditStream
from experiments.evaluation import (
    Curve,
    Immediate,
    base_key,
    base_predictions,
    eval_probes,
    evaluate_edited,
)
from experiments.results import (
    TrainLog,
    finish_run,
    git_commit,
    machine,
    machine_shares,
    write_text,
)
from experiments.validation import check_finite, check_options


def build(node: DictConfig, **kwargs: Any) -> Any:
    """Instantiate a config node; errors surface as raised by the target, not wrapped by Hydra."""
    try:
        factory = instantiate(node, _partial_=True)
    except InstantiationException as err:
        raise (err.__cause__ or err) from None
    try:
        # _partial_: Hydra would turn a dataclass argument (LoadedModel) into a config.
        return factory(**kwargs)
    except InstantiationException as err:
        raise (err.__cause__ or err) from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_lengths(stream: EditStream, model: LoadedModel) -> None:
    """Every probe's prompt + target must fit the model's context; fail naming the probe."""
    limit = model.max_length
    for split, probes in eval_probes(stream).items():
        for i, probe in enumerate(probes):
            p, t = split_ids(model.tokenizer, probe.prompt, probe.target)
            if len(p) + len(t) > limit:
                raise ValueError(
                    f"{stream.name} {split} probe {i} (case {probe.case_id}): prompt + target "
                    f"is {len(p) + len(t)} tokens, over {model.name}'s context of {limit}"
                )


def retention_evaluator(cfg: DictConfig, model: LoadedModel):
    """The retention evaluator of ``eval.retention`` (None when the eval config has none)."""
    if not cfg.eval.get("retention"):
        return None
    return build(cfg.eval.retention, model=model)


def run(cfg: DictConfig, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """One experiment: validate, evaluate the base model, edit, evaluate, write results."""
    t0 = time.perf_counter()
    if cfg.get("resume"):
        cfg = resume_config(cfg, overrides)  # the run folder's own config
    check_options(cfg)
    commit = git_commit()  # the code that runs, not the code at the end of a long run
    seed_everything(cfg.seed)
    stream: EditStream = build(cfg.data)  # fails on a missing or malformed data file
    model: LoadedModel = build(cfg.model)
    check_lengths(stream, model)
    retention = retention_evaluator(cfg, model)  # fingerprints the untouched weights
    key = base_key(model, stream, cfg.eval.batch_size)  # likewise, before any editor wraps
    editor: Editor = build(cfg.method, model=model)  # fails on a layer the model lacks
    editor.check_stream(stream.records)  # e.g. more labels than ELDER has allocations
    if cfg.save and not supports_state(editor):
        raise ValueError(f"save=true: {editor.name} cannot save its edits yet (no state())")

    stamp = datetime.now(timezone.utc)
    run_dir = run_folder(cfg, editor, model, stream, stamp)
    with lock_run(run_dir):
        if cfg.resume:  # the row names the run's variant, not `resume=`
            if (run_dir / "overrides.txt").is_file():
                overrides = tuple(shlex.split((run_dir / "overrides.txt").read_text()))
        else:
            write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            write_text(run_dir / "overrides.txt", shlex.join(overrides))  # values may hold spaces
        logger = build(cfg.logger)
        logger.start(run_dir.name, run_dir, OmegaConf.to_container(cfg, resolve=True))
        checkpoints = Checkpoints(run_dir, cfg.checkpoint.every, editor)
        # The unedited model's outputs (cached across runs; an editor's construction changes
        # nothing, so they are computed through the wrapped model); a resumed run keeps its own.
        base = checkpoints.base_eval() if cfg.resume else None
        if base is None:
            base = base_predictions(
                model, stream, cfg.eval.batch_size, key, cfg.eval.get("base_cache_dir")
            )
            checkpoints.save_base_eval(base)
        if retention is not None:
            retention.prepare()
        edit_seconds, by_machine, immediate = edit_stream(
            cfg, editor, model, stream, run_dir, checkpoints, logger
        )
        if cfg.save:
            save(editor, run_dir / SAVED_DIR)
        result, predictions = evaluate_edited(
            editor, model, stream, cfg.eval, base, retention, run_dir
        )
        result.update(immediate.results())
        row = {
            "run_id": run_dir.name,
            "timestamp": stamp.isoformat(timespec="seconds"),
            "git_commit": commit,
            "machine": " + ".join(dict.fromkeys([*by_machine, machine()])),  # edits, then eval
            "method": editor.name,
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
            "overrides": shlex.join(overrides),  # tables read it back with shlex.split
        }
        if len(by_machine) > 1:  # resumed elsewhere: each machine's own speed
            row["edit_s_by_machine"] = machine_shares(
                by_machine, stream.batch_size, len(stream.records)
            )
        finish_run(run_dir, cfg.results_dir, row, predictions)
        logger.log({f"eval/{k}": v for k, v in result.items()}, step=len(stream.batches()))
        logger.finish(row)
    return row


def run_folder(
    cfg: DictConfig, editor: Editor, model: LoadedModel, stream: EditStream, stamp: datetime
) -> Path:
    """The run's folder (created): ``resume``'s, or ``<results_dir>/runs/<run_name>``."""
    if cfg.resume:
        return Path(cfg.resume)
    run_id = cfg.run_name or (
        f"{stamp:%Y%m%d-%H%M%S}_{editor.name}_{model.name}_{stream.name}_{uuid.uuid4().hex[:6]}"
    )
    run_dir = Path(cfg.results_dir) / "runs" / run_id
    if (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir} already exists: resume={run_dir} or another run_name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def edit_stream(
    cfg: DictConfig,
    editor: Editor,
    model: LoadedModel,
    stream: EditStream,
    run_dir: Path,
    checkpoints: Checkpoints,
    logger: Any,
) -> tuple[float, dict[str, tuple[int, float]], Immediate]:
    """Edit batch after batch from the last checkpoint on; the edit seconds, by machine too.

    Returns (edit seconds, {machine: (batches, seconds)}, the immediate evaluation).
    """
    bs = cfg.eval.batch_size
    done, edit_seconds = checkpoints.restore() if cfg.resume else (0, 0.0)
    curve = Curve(cfg.eval.get("every"), run_dir, model, bs)
    curve.restore(edits_done=len(stream.records[: done * stream.batch_size]))
    immediate = Immediate(cfg.eval.get("immediate", False), run_dir, model, bs)
    immediate.restore(batches_done=done)
    train_log = TrainLog(run_dir)
    train_log.restore(batches_done=done)

    def not_editing() -> float:  # evaluation and checkpoint time inside the editing loop
        return checkpoints.seconds + curve.seconds + immediate.seconds

    start = time.perf_counter()
    batches = stream.batches()
    progress = tqdm(total=len(batches), initial=done, desc=f"editing ({editor.name})", unit="batch")
    for step in range(done, len(batches)):
        last = step + 1 == len(batches)
        stats = editor.edit(batches[step])
        if last:  # edits a method held back go in now (LEMoE's order planning)
            stats = {**stats, **{f"flush_{k}": v for k, v in editor.flush().items()}}
        check_finite(stats, step + 1, checkpoints.last, run_dir)
        logger.log({f"train/{k}": v for k, v in stats.items()}, step=step)
        train_log.log(step, stats)
        immediate.after_batch(editor, step, batches[step])
        elapsed = edit_seconds + time.perf_counter() - start - not_editing()
        so_far = stream.records[: (step + 1) * stream.batch_size]
        point = curve.after_batch(editor, so_far, step * stream.batch_size, last, elapsed)
        if point is not None:
            logger.log({f"curve/{k}": v for k, v in point.items()}, step=step)
        checkpoints.after_batch(step + 1, elapsed)
        progress.update()
    progress.close()
    edit_seconds += time.perf_counter() - start - not_editing()
    return edit_seconds, checkpoints.by_machine(len(batches), edit_seconds), immediate
