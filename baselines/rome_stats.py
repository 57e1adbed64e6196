"""Second-moment statistics C = E[k kᵀ] of the keys entering a layer (ROME, Section 3.1).

ROME estimates C from 100,000 Wikipedia samples; no Wikipedia is readable here, so the corpus
is a text field of a JSON-lines data file (:func:`elder.data.data_file`; by default the BoolQ
passages of the general-task benchmark). C is computed once per model, layer and corpus and
cached on disk as safetensors.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from elder.atomic import atomic_path
from elder.data import data_file
from elder.models import LoadedModel, get_module


class _Stop(Exception):
    pass


def corpus_texts(path: str, text_field: str, n_samples: int | None) -> list[str]:
    """The first ``n_samples`` values of ``text_field`` in a JSON-lines file (None: all)."""
    file = data_file(path)
    texts = []
    with open(file) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            value = json.loads(line).get(text_field)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{file}:{line_no}: field '{text_field}' is missing or empty")
            texts.append(value)
            if n_samples is not None and len(texts) == n_samples:
                break
    return texts


@torch.no_grad()
def second_moment(
    model: LoadedModel, module: str, texts: list[str], batch_size: int = 8
) -> tuple[torch.Tensor, int]:
    """Uncentered E[k kᵀ] (in, in) in float64 over every token of ``texts``, and the count."""
    layer = get_module(model.hf, module)
    tok = model.tokenizer
    max_len = min(model.max_length, 1024)  # ROME's GPT-2 context; BoolQ passages are shorter
    captured: dict[str, torch.Tensor] = {}

    def grab(mod, args):
        captured["k"] = args[0]
        raise _Stop  # nothing above the layer is needed

    total, count = None, 0
    order = sorted(texts, key=len)  # similar lengths per batch: less padding
    handle = layer.register_forward_pre_hook(grab)
    try:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=f"ROME second moment ({module})", unit="batch"):
            enc = tok(
                order[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_len,
            ).to(model.device)
            with contextlib.suppress(_Stop):
                model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
            k = captured["k"][enc.attention_mask.bool()].double()  # (tokens, in), no padding
            total = k.T @ k if total is None else total + k.T @ k
            count += k.shape[0]
    finally:
        handle.remove()
    return total / count, count


def cached_second_moment(
    model: LoadedModel,
    module: str,
    corpus: str,
    text_field: str,
    n_samples: int | None,
    stats_dir: str,
) -> torch.Tensor:
    """C for (model, module, corpus), read from ``stats_dir`` or computed and written there."""
    tag = f"{Path(corpus).stem}.{text_field}.{n_samples or 'all'}"
    file = Path(stats_dir) / model.name / f"{module}.{tag}.safetensors"
    if file.is_file():
        return load_file(str(file))["mom2"].to(model.device)
    mom2, count = second_moment(model, module, corpus_texts(corpus, text_field, n_samples))
    with atomic_path(file) as tmp:  # never leave a half-written cache behind
        save_file({"mom2": mom2.cpu().contiguous()}, str(tmp), metadata={"tokens": str(count)})
    return mom2
