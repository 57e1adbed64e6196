"""On-disk cache of the unedited model's outputs, so a sweep over methods pays for them once.

Used for the retention tasks' generations and for the edit stream's teacher-forced
predictions. One JSON file per (model, task) under ``<cache_dir>/<model>/``, named by a hash
of everything that determines the outputs: the model's weights (a fingerprint), the prompts
(for retention: the prompt version and the sample), the batching (padding can change the
last bits of a logit), dtype and device. A file whose stored key differs is ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from experiments.results import write_json


def fingerprint(model: torch.nn.Module) -> str:
    """A cheap exact fingerprint of a model's weights: a strided sample of every tensor."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        flat = t.detach().flatten()
        sample = flat[:: max(1, flat.numel() // 4096)].cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(sample.view(torch.uint8).numpy().tobytes() if sample.numel() else b"")
    return h.hexdigest()[:16]


def cache_file(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    """Where the outputs for ``key`` (which names ``model`` and ``task``) are kept."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / key["model"] / f"{key['task']}-{digest}.json"


def load(cache_dir: str | Path, key: dict[str, Any]) -> list[dict] | None:
    """The cached outputs for ``key``, or None."""
    file = cache_file(cache_dir, key)
    if not file.is_file():
        return None
    try:
        stored = json.loads(file.read_text())
    except json.JSONDecodeError:
        return None
    return stored["outputs"] if stored.get("key") == key else None


def save(cache_dir: str | Path, key: dict[str, Any], outputs: list[dict]) -> Path:
    """Store outputs under ``key`` (atomically)."""
    file = cache_file(cache_dir, key)
    write_json(file, {"key": key, "outputs": outputs})
    return file
