"""Resumable runs: checkpoints of the editor, the stream position and the RNGs.

Layout of a run folder (``results/runs/<run_id>/``)::

    config.yaml            the run's resolved config (a resume reuses it)
    base_eval.json         the unedited model's predictions, computed once before editing
    checkpoint/latest.json {"dir": "step-000012", "batches_done": 12}
    checkpoint/step-000012/state.safetensors + state.json   Editor.state()
                          rng.safetensors + progress.json   stream position, RNG states

A checkpoint folder is written in full under a temporary name, renamed, and only then does
``latest.json`` (replaced atomically) point at it: a SIGKILL at any moment leaves either the
old checkpoint or the new one. The base evaluation is stored rather than recomputed so that a
resumed run does not pay for it again (it is deterministic either way).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from elder.atomic import atomic_dir
from elder.editor import Editor
from elder.saved import read_state, run_config, write_state
from experiments.metrics import Prediction
from experiments.results import machine, write_json

CHECKPOINT_DIR, LATEST, BASE_EVAL = "checkpoint", "latest.json", "base_eval.json"
RUN_KEYS = ("resume", "hydra")  # overrides that may differ from the resumed run's config
# ... and the one a resume may change: how often it checkpoints, which leaves its results alone
RESUME_KEYS = ("checkpoint",)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The python, numpy and torch (CPU and CUDA) generator states."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    meta = {
        "python": [version, list(mt), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, mt, gauss = meta["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _atomic_json(path: Path, obj: Any) -> None:
    write_json(path, obj)
    fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_base_eval(run_dir: Path) -> dict[str, list[Prediction]] | None:
    """The unedited model's predictions stored in a run folder, if there are any."""
    file = run_dir / BASE_EVAL
    if not file.is_file():
        return None
    return {k: [Prediction(**p) for p in v] for k, v in json.loads(file.read_text()).items()}


def supports_state(editor: Editor) -> bool:
    """Whether the method implements :meth:`Editor.state` (all methods should, in time)."""
    try:
        editor.state()
    except NotImplementedError:
        return False
    return True


def latest(run_dir: Path) -> tuple[Path, int] | None:
    """The run's newest checkpoint folder and how many edit batches it holds, if any."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    entry = json.loads(pointer.read_text())
    return pointer.parent / entry["dir"], int(entry["batches_done"])


class Checkpoints:
    """Saves a run's progress every ``every`` batches and restores the latest one."""

    def __init__(self, run_dir: Path, every: int, editor: Editor) -> None:
        self.root = run_dir / CHECKPOINT_DIR
        self.run_dir, self.editor = run_dir, editor
        self.every = every
        if every and not supports_state(editor):
            print(
                f"warning: {editor.name} has no state() yet, so this run cannot be "
                f"checkpointed (checkpoint.every={every} ignored)",
                file=sys.stderr,
            )
            self.every = 0
        self.seconds = 0.0  # time spent writing checkpoints (not editing time)
        self.last = 0  # batches done at the last checkpoint
        # Where this run's edits ran, {machine: (batches, editing seconds)}, up to the restored
        # checkpoint: a run resumed elsewhere (edits on a GPU, the rest here) names every
        # machine with its share, so that s/edit is never read as this machine's alone.
        self.earlier: dict[str, tuple[int, float]] = {}
        self.restored = (0, 0.0)

    # -- the base model's predictions ---------------------------------------------------------

    def base_eval(self) -> dict[str, list[Prediction]] | None:
        """The stored base evaluation of this run folder, if there is one."""
        return read_base_eval(self.run_dir)

    def save_base_eval(self, base: dict[str, list[Prediction]]) -> None:
        _atomic_json(self.run_dir / BASE_EVAL, {k: [asdict(p) for p in v] for k, v in base.items()})

    # -- the editor, the stream position, the RNGs --------------------------------------------

    def after_batch(self, batches_done: int, edit_seconds: float) -> None:
        """Checkpoint if ``batches_done`` is a multiple of ``every``."""
        if self.every and batches_done % self.every == 0:
            self.save(batches_done, edit_seconds)

    def save(self, batches_done: int, edit_seconds: float) -> None:
        """Write a full checkpoint, then point ``latest.json`` at it, then drop older ones."""
        t0 = time.perf_counter()
        name = f"step-{batches_done:06d}"
        with atomic_dir(self.root / name) as tmp:
            tensors, meta = self.editor.state()
            write_state(tmp, tensors, {"method": self.editor.name, **meta})
            rng_tensors, rng_meta = rng_state()
            rng_tensors = {k: v.contiguous() for k, v in rng_tensors.items()}
            save_file(rng_tensors, str(tmp / "rng.safetensors"))
            progress = {
                "batches_done": batches_done,
                "edit_seconds": edit_seconds,
                "by_machine": self.by_machine(batches_done, edit_seconds),
                "rng": rng_meta,
            }
            (tmp / "progress.json").write_text(json.dumps(progress))
        _atomic_json(self.root / LATEST, {"dir": name, "batches_done": batches_done})
        for old in self.root.iterdir():  # older checkpoints and leftovers of a killed write
            if old.is_dir() and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        self.last = batches_done
        self.seconds += time.perf_counter() - t0

    def restore(self) -> tuple[int, float]:
        """Load the latest checkpoint into the editor and the RNGs: (batches done, edit s)."""
        found = latest(self.run_dir)
        if found is None:
            return 0, 0.0
        folder, _ = found
        tensors, meta = read_state(folder)
        if meta.pop("method", None) != self.editor.name:
            raise ValueError(f"{folder} is not a checkpoint of {self.editor.name}")
        meta.pop("format")
        self.editor.load_state(tensors, meta)
        progress = json.loads((folder / "progress.json").read_text())
        set_rng_state(load_file(str(folder / "rng.safetensors")), progress["rng"])
        self.last = progress["batches_done"]
        self.restored = (progress["batches_done"], progress["edit_seconds"])
        # Checkpoints of commit ba1a321 name their machine without its share: it had them all.
        named = progress.get("machines", [])
        default = {" + ".join(named): self.restored} if named else {}
        self.earlier = {m: tuple(v) for m, v in progress.get("by_machine", default).items()}
        return self.restored

    def by_machine(self, batches_done: int, edit_seconds: float) -> dict[str, tuple[int, float]]:
        """{machine: (batches, editing seconds)} of the run so far, this machine's share last."""
        shares, here = dict(self.earlier), machine()
        batches, seconds = shares.pop(here, (0, 0.0))
        batches += batches_done - self.restored[0]
        seconds += edit_seconds - self.restored[1]
        return {**shares, here: (batches, seconds)} if batches else shares


# -- resuming a run folder ---------------------------------------------------------------------


def resume_config(cfg: DictConfig, overrides: tuple[str, ...]) -> DictConfig:
    """The config of the run folder ``cfg.resume``; refuses overrides that would change it,
    except ``checkpoint.*``, which it applies (a slow run may checkpoint more often)."""
    run_dir = Path(cfg.resume)
    file = run_dir / "config.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"resume={run_dir}: not a run folder (no config.yaml in it)")
    if (run_dir / "metrics.json").is_file():
        raise ValueError(f"resume={run_dir}: this run has already finished (metrics.json)")
    saved = run_config(run_dir)
    conflicts = []
    for item in overrides:
        key, _, _ = item.lstrip("+~").partition("=")
        if key.split(".")[0] in RUN_KEYS:
            continue
        if key.split(".")[0] in RESUME_KEYS:
            OmegaConf.update(saved, key, _plain(OmegaConf.select(cfg, key)))
            continue
        given, before = (_plain(OmegaConf.select(c, key)) for c in (cfg, saved))
        if given != before:
            conflicts.append(f"{key}: run has {before!r}, command line gives {given!r}")
    if conflicts:
        raise ValueError(
            f"resume={run_dir} reuses that run's config, but overrides change it: "
            + "; ".join(conflicts)
        )
    saved.resume = str(run_dir)
    return saved


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


@contextmanager
def lock_run(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder while the ``with`` block runs.

    Two processes writing the same run folder (a resume started while the run still goes on)
    would interleave checkpoints. A POSIX record lock: the OS drops it when the process dies,
    even by SIGKILL, and the same process may take it again (a test resuming in-process).
    """
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(
                f"{run_dir} is in use by another process (a run or a resume)"
            ) from None
        yield
