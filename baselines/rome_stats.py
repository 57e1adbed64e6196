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
    model: LoadedModel, modules: list[str], texts: list[str], batch_size: int = 8
) -> tuple[list[torch.Tensor], int]:
    """Uncentered E[k kᵀ] (in, in) in float64 of each module's input over every token of
    ``texts``, all in one pass, and the token count."""
    layers = [get_module(model.hf, m) for m in modules]
    tok = model.tokenizer
    max_len = min(model.max_length, 1024)  # ROME's GPT-2 context; BoolQ passages are shorter
    captured: dict[int, torch.Tensor] = {}

    def grab(i: int):
        def hook(mod, args):
            captured[i] = args[0]
            if len(captured) == len(layers):
                raise _Stop  # nothing above the last layer is needed

        return hook

    totals: list[torch.Tensor | None] = [None] * len(layers)
    count = 0
    order = sorted(texts, key=len)  # similar lengths per batch: less padding
    handles = [layer.register_forward_pre_hook(grab(i)) for i, layer in enumerate(layers)]
    try:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=f"second moment ({', '.join(modules)})", unit="batch"):
            enc = tok(
                order[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_len,
            ).to(model.device)
            captured.clear()
            with contextlib.suppress(_Stop):
                model.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
            keep = enc.attention_mask.bool()
            for i in range(len(layers)):
                k = captured[i][keep].double()  # (tokens, in), no padding
                totals[i] = k.T @ k if totals[i] is None else totals[i] + k.T @ k
            count += int(keep.sum())
    finally:
        for handle in handles:
            handle.remove()
    return [total / count for total in totals], count


def cached_second_moments(
    model: LoadedModel,
    modules: list[str],
    corpus: str,
    text_field: str,
    n_samples: int | None,
    stats_dir: str,
) -> list[torch.Tensor]:
    """C of each module for (model, corpus), read from ``stats_dir`` or computed (the missing
    ones, in one pass) and written there."""
    tag = f"{Path(corpus).stem}.{text_field}.{n_samples or 'all'}"
    files = [Path(stats_dir) / model.name / f"{m}.{tag}.safetensors" for m in modules]
    missing = [m for m, f in zip(modules, files, strict=True) if not f.is_file()]
    if missing:
        texts = corpus_texts(corpus, text_field, n_samples)
        mom2s, count = second_moment(model, missing, texts)
        for m, mom2 in zip(missing, mom2s, strict=True):
            with atomic_path(files[modules.index(m)]) as tmp:  # never a half-written cache
                save_file(
                    {"mom2": mom2.cpu().contiguous()}, str(tmp), metadata={"tokens": str(count)}
                )
    return [load_file(str(f))["mom2"].to(model.device) for f in files]


def cached_second_moment(
    model: LoadedModel,
    module: str,
    corpus: str,
    text_field: str,
    n_samples: int | None,
    stats_dir: str,
) -> torch.Tensor:
    """C for (model, module, corpus), as :func:`cached_second_moments`."""
    return cached_second_moments(model, [module], corpus, text_field, n_samples, stats_dir)[0]
