"""Saving and loading an editor's state: safetensors for tensors, JSON for the rest, no pickle.

A saved edited model is the base model (rebuilt from the run folder's ``config.yaml``) plus
what :meth:`Editor.state` returned, written next to it. :func:`load` puts the two together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from elder.atomic import atomic_dir
from elder.editor import Editor
from elder.models import LoadedModel

TENSORS, META = "state.safetensors", "state.json"
SAVED_DIR = "edited"  # where a run folder keeps its saved edits (`save=true`)
FORMAT = 1  # version of the layout below; bumped when it changes incompatibly
MODEL_TARGET = "elder.models.load_model"


def write_state(directory: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors and metadata into ``directory`` (created), flushed to disk."""
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses views and shared storage: give it contiguous copies on the CPU.
    save_file(
        {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
        str(directory / TENSORS),
    )
    with open(directory / META, "w") as f:
        json.dump({"format": FORMAT, **meta}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync(directory / TENSORS)


def read_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What :func:`write_state` wrote; a clear error if it is missing or from another format."""
    for name in (TENSORS, META):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"no saved editor state in {directory}: '{name}' is missing")
    meta = json.loads((directory / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{directory / META} has format {meta.get('format')}, this code reads {FORMAT}"
        )
    return load_file(str(directory / TENSORS)), meta


def save(editor: Editor, directory: Path) -> None:
    """Save the editor's edits into ``directory`` (written to a temporary folder first)."""
    tensors, meta = editor.state()
    with atomic_dir(directory) as tmp:
        write_state(tmp, tensors, {"method": editor.name, **meta})


def restore(editor: Editor, directory: Path) -> None:
    """Load a state saved by :func:`save` into an editor built with the same config."""
    tensors, meta = read_state(directory)
    method = meta.pop("method", None)
    if method != editor.name:
        raise ValueError(f"{directory} holds a '{method}' state, not one of '{editor.name}'")
    meta.pop("format")
    editor.load_state(tensors, meta)


def part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a state named ``<prefix>.<key>``, keyed by ``<key>``."""
    head = prefix + "."
    return {k.removeprefix(head): v for k, v in tensors.items() if k.startswith(head)}


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """A torch optimizer's state dict split into tensors ("<param>.<key>") and JSON."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    # A device-tensor lr (elder.step's capturable Adam) is saved as its value.
    groups = [
        {k: v.item() if torch.is_tensor(v) else v for k, v in group.items()}
        for group in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- a run folder's saved edited model ---------------------------------------------------------


def run_config(run_dir: str | Path):
    """A run folder's ``config.yaml``, its method section upgraded to today's keys.

    Every reader of a run's config goes through here, so that an option added after the run
    keeps the value the run was made with (``Editor.upgrade_config``).
    """
    from omegaconf import OmegaConf  # a safe YAML loader: no object construction

    file = Path(run_dir) / "config.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no config.yaml")
    cfg = OmegaConf.load(file)
    if cfg.get("method") is not None and cfg.method.get("_target_"):
        method = OmegaConf.to_container(cfg.method, resolve=False)
        upgraded = _editor_class(cfg.method._target_, file).upgrade_config(method)
        cfg.method = OmegaConf.create(upgraded)
    return cfg


def _editor_class(target: str, where: Path) -> type[Editor]:
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except (ValueError, ImportError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Editor)):
        raise ValueError(f"{where}: method._target_ {target} is not an Editor")
    return cls


def load_base(
    run_dir: str | Path, device: str | None = None, trust_remote_code: bool = False
) -> LoadedModel:
    """The unedited model of a run, rebuilt from its ``config.yaml`` (same seed, same weights).

    A run folder may come from someone else: its model config may not switch on
    ``trust_remote_code`` unless the caller passes ``trust_remote_code=True`` too.
    """
    from hydra.utils import instantiate

    cfg = run_config(Path(run_dir))
    model_cfg = cfg.model
    if model_cfg.get("_target_") != MODEL_TARGET:
        raise ValueError(f"{run_dir}: model._target_ must be {MODEL_TARGET}")
    if model_cfg.get("trust_remote_code") and not trust_remote_code:
        raise ValueError(
            f"{run_dir}/config.yaml asks for trust_remote_code; pass trust_remote_code=True "
            f"to run the model's own code"
        )
    if device is not None:
        model_cfg.device = device
    torch.manual_seed(int(cfg.seed))  # tiny models are random: the run's seed rebuilds them
    return instantiate(model_cfg)


def editor_class(run_dir: str | Path) -> type[Editor]:
    """The Editor class a run folder's config names (any other ``_target_`` is refused)."""
    return _editor_class(run_config(run_dir).method._target_, Path(run_dir))


def check_inference_options(run_dir: str | Path, options: dict[str, Any]) -> None:
    """Refuse changes to a saved run's method config beyond its ``inference_options``."""
    cls = editor_class(run_dir)
    training = sorted(set(options) - cls.inference_options)
    if training:
        allowed = ", ".join(sorted(cls.inference_options)) or "none"
        raise ValueError(
            f"{cls.__name__}: {', '.join(training)} change what edit() trains, so they need a "
            f"new run; what may change after editing: {allowed}"
        )


def load(
    run_dir: str | Path,
    model: LoadedModel | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    options: dict[str, Any] | None = None,
    state_dir: str | Path | None = None,
) -> Editor:
    """The edited model saved by a run with ``save=true``: its editor, ready for ``generate``.

    ``model``: the run's base model if already loaded (see :func:`load_base`); it is edited
    in place. ``options``: other values for the method's ``inference_options`` (e.g. ELDER's
    ``eps``); any other field would change what was trained, and is refused. ``state_dir``:
    read the editor's state from there instead of ``<run_dir>/edited`` (e.g. a checkpoint).
    """
    from hydra.utils import instantiate

    run_dir = Path(run_dir)
    saved = run_dir / SAVED_DIR if state_dir is None else Path(state_dir)
    if not saved.is_dir():
        raise FileNotFoundError(
            f"{run_dir} has no saved edits ('{SAVED_DIR}/'): run it with save=true"
            if state_dir is None
            else f"{saved}: no such folder"
        )
    cfg = run_config(run_dir)
    check_inference_options(run_dir, options or {})
    for key, value in (options or {}).items():
        cfg.method[key] = value
    if model is None:
        model = load_base(run_dir, device, trust_remote_code)
    editor = instantiate(cfg.method, _partial_=True)(model=model)
    restore(editor, saved)
    return editor
