"""GRACE: a discrete key-value codebook at one layer (Hartvigsen et al., NeurIPS 2023).

The adaptor wraps one layer. Its codebook holds entries (key, value, radius ε, label); a key is
the layer's *input* at the last prompt token, a value replaces the layer's *output*.

Editing (Section 3 of the paper, per edit, at its first iteration), with d the distance from the
new key to the nearest key:
    d > ε_init + ε_nearest          -> add a new entry (radius ε_init)
    else, labels differ              -> add a new entry; split: both radii become d/2
                                        (the old one slightly less, so the two balls are disjoint)
    else, d > ε_nearest              -> expand ε_nearest to d ("coverage")
    else                             -> the key is already covered: train that entry's value
then the chosen entry's value is trained (Adam, lr 1.0, 100 steps) so that replacing the
layer's output with it produces the target.

The rules read keys, radii and labels only, never values, and a key is the layer's input,
which the codebook does not change. So applying the rules of a whole batch first and training
afterwards is the same as interleaving them edit by edit. When the edits of a batch land in
distinct entries, their values are trained together in one batched forward (``batched``): the
loss is the sum of the per-edit losses, so each value gets its own edit's gradient, and Adam is
elementwise, so the updates are those of one edit after another, up to float rounding
(`python -m experiments.bench --n-edits 20 --methods grace_one_by_one,grace` times both). When
two edits share an entry, the later one goes on from the value the earlier one trained, as in
the paper: that batch is trained one edit after another.

Inference: if the nearest key is within its radius ("hit"), its value replaces the layer's
output at the positions of the replacement mode, else the layer is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines._common import block_of, module_io, rows, target_logits
from elder import trunk
from elder.editor import Editor, EditRecord, Encoded
from elder.models import LoadedModel, get_module, set_module
from elder.molora import io_features

REPLACEMENTS = ("replace_prompt", "replace_prompt_ref", "replace_last", "replace_all")


@dataclass
class GRACEConfig:
    """Hyperparameters of GRACE; defaults are the paper's / reference code's."""

    module: str  # the layer that gets the codebook, e.g. "model.layers.25.mlp.down_proj"
    eps_init: float = 1.0  # ε_init, radius of a new entry
    lr: float = 1.0  # Adam learning rate of a value
    iterations: int = 100  # optimisation steps per edit
    replacement: str = "replace_prompt_ref"  # which positions a hit replaces (see GRACELayer)
    value_init: str = "rand"  # cold "rand" (U[0,1), the reference's cold init) or "warm"
    eps_expand: str = "coverage"  # "coverage" (ε := d) or "moving_average" (key halfway, ε := d)
    fast_path: bool = True  # cache the frozen blocks below the codebook layer while training
    batched: bool = True  # train a batch's values together when they are distinct entries

    def __post_init__(self) -> None:
        checks = [
            (self.eps_init > 0, f"eps_init must be > 0, got {self.eps_init}"),
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.replacement in REPLACEMENTS, f"replacement must be one of {REPLACEMENTS}"),
            (self.value_init in ("rand", "warm"), "value_init must be 'rand' or 'warm'"),
            (
                self.eps_expand in ("coverage", "moving_average"),
                "eps_expand must be 'coverage' or 'moving_average'",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"GRACE: {message}")


class GRACELayer(nn.Module):
    """A frozen layer plus a codebook of (key, value, radius, label) entries.

    Replacement modes, for a hit sequence whose last prompt token is at position p:
    - ``replace_prompt_ref`` (the default): positions 0..p-1, the reference's and EasyEdit's
      ``replace_prompt`` (they slice ``[:p]`` with p the key's position, the last prompt token,
      so the token that predicts the answer keeps the layer's own output);
    - ``replace_prompt``: positions 0..p, every prompt token, the last one included (this
      project's default before issue #26);
    - ``replace_last``: position p only;
    - ``replace_all``: every position, also target tokens and tokens generated later.
    Under ``generate`` the lookup happens once, at the prefill step; on the KV-cached decode
    steps the new tokens are replaced only in ``replace_all`` mode. This matches teacher
    forcing, where target positions (which generated tokens stand for) are replaced only in
    ``replace_all`` mode too.
    """

    def __init__(self, base_layer: nn.Module, replacement: str) -> None:
        super().__init__()
        self.base_layer = base_layer
        in_f, out_f = io_features(base_layer)
        ref = base_layer.weight
        self.replacement = replacement
        self.register_buffer("keys", torch.empty(0, in_f, device=ref.device, dtype=ref.dtype))
        self.register_buffer("values", torch.empty(0, out_f, device=ref.device, dtype=ref.dtype))
        self.register_buffer("radius", torch.empty(0, device=ref.device, dtype=torch.float32))
        self.labels: list[str] = []
        # Set by the editor around a forward pass: the last prompt token of each row (None:
        # the layer is its base layer), a value trained for every row (editing), and the
        # lookup kept from the prefill step to the decode steps of `generate`.
        self.prompt_last: torch.Tensor | None = None
        self.train_value: torch.Tensor | None = None
        self.lookup: dict[str, torch.Tensor] | None = None

    def nearest(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance to and index of the nearest key: query (B, in) -> (B,), (B,)."""
        dist = torch.cdist(query.float(), self.keys.float())  # (B, n)
        return dist.min(dim=1)

    def _mask(self, hit: torch.Tensor, length: int, first: bool) -> torch.Tensor:
        """(B, T) positions to replace in a call that sees ``length`` tokens."""
        positions = torch.arange(length, device=hit.device)[None, :]  # (1, T)
        if not first:  # a decode step: the new token is not a prompt token
            mask = torch.full_like(positions, self.replacement == "replace_all", dtype=torch.bool)
        elif self.replacement == "replace_all":
            mask = torch.ones_like(positions, dtype=torch.bool)
        elif self.replacement == "replace_last":
            mask = positions == self.prompt_last[:, None]
        elif self.replacement == "replace_prompt_ref":
            mask = positions < self.prompt_last[:, None]
        else:
            mask = positions <= self.prompt_last[:, None]
        return mask & hit[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.prompt_last is None:
            return out
        first = self.lookup is None or "hit" not in self.lookup
        if self.train_value is not None:
            hit = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            value = self.train_value.expand(x.shape[0], -1)  # (B, out)
        elif first:
            if len(self.keys) == 0:
                hit = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
                value = out.new_zeros(x.shape[0], out.shape[-1])
            else:
                dist, index = self.nearest(rows(x, self.prompt_last))
                hit = dist <= self.radius[index]
                value = self.values[index]
            if self.lookup is not None:
                self.lookup.update(hit=hit, value=value)
        else:
            hit, value = self.lookup["hit"], self.lookup["value"]
        mask = self._mask(hit, x.shape[1], first or self.train_value is not None)  # (B, T)
        return torch.where(mask[..., None], value[:, None, :].to(out.dtype), out)

    def update_codebook(
        self,
        key: torch.Tensor,
        label: str,
        value: torch.Tensor,
        eps_init: float,
        eps_expand: str = "coverage",
    ) -> tuple[int, str]:
        """Apply GRACE's rules for one new key (in,); returns the entry to train and the rule."""
        key = key.detach().to(self.keys.dtype)

        def add(radius: float) -> int:
            self.keys = torch.cat([self.keys, key[None]])
            self.values = torch.cat([self.values, value.detach()[None].to(self.values.dtype)])
            self.radius = torch.cat([self.radius, self.radius.new_tensor([radius])])
            self.labels.append(label)
            return len(self.labels) - 1

        if len(self.keys) == 0:
            return add(eps_init), "add"
        dist, index = (t.item() for t in self.nearest(key[None]))
        if dist > eps_init + self.radius[index].item():
            return add(eps_init), "add"
        if self.labels[index] != label:
            self.radius[index] = dist / 2 - 1e-5  # the old ball shrinks slightly more
            return add(dist / 2), "split"
        if dist > self.radius[index].item():
            if eps_expand == "moving_average":
                self.keys[index] = (self.keys[index] + key) / 2
            self.radius[index] = dist
            return index, "expand"
        return index, "covered"


@dataclass
class _Edit:
    enc: Encoded
    hidden: torch.Tensor | None  # cached input of the codebook's block (fast path)

    def row(self, i: int) -> _Edit:
        """The batch's i-th edit alone (its padding stays: the mask covers it)."""
        enc = self.enc
        one = Encoded(
            *(
                t[i : i + 1]
                for t in (enc.input_ids, enc.attention_mask, enc.labels, enc.prompt_last)
            )
        )
        return _Edit(one, None if self.hidden is None else self.hidden[i : i + 1])


class GRACE(Editor):
    """GRACE editor; build with the fields of :class:`GRACEConfig`."""

    name = "grace"
    config_class = GRACEConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.block = block_of(model, cfg.module)
        self.layer = GRACELayer(get_module(model.hf, cfg.module), cfg.replacement)
        set_module(model.hf, cfg.module, self.layer)
        self.rules: dict[str, int] = {"add": 0, "split": 0, "expand": 0, "covered": 0}

    def extra_params(self) -> int:
        return self.layer.keys.numel() + self.layer.values.numel() + self.layer.radius.numel()

    @contextmanager
    def _positions(self, prompt_last: torch.Tensor, lookup: dict | None = None):
        self.layer.prompt_last, self.layer.lookup = prompt_last, lookup
        try:
            yield
        finally:
            self.layer.prompt_last = self.layer.lookup = self.layer.train_value = None

    # -- editing -----------------------------------------------------------------------------

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        # GRACE is a per-edit method: the rules are applied one edit after another, in order.
        edits, entries = self._apply_rules(batch)
        if self.config.batched and len(set(entries)) == len(entries):
            losses = self._train(edits, entries)
        else:  # one after another: an entry shared in the batch goes on from the last value
            losses = [
                loss
                for i, entry in enumerate(entries)
                for loss in self._train(edits.row(i), [entry])
            ]
        return {"loss": sum(losses) / len(losses), "codebook": float(len(self.layer.labels))}

    def _apply_rules(self, batch: list[EditRecord]) -> tuple[_Edit, list[int]]:
        """Encode a batch and apply the codebook rules to its keys, in order: the entries."""
        cfg = self.config
        enc = self.encode(batch)
        hidden = trunk.block_input(self.model, self.block, enc) if cfg.fast_path else None
        start = self.block if cfg.fast_path else None
        x, out = module_io(self.model, self.layer.base_layer, enc, start, hidden)
        keys, outs = rows(x, enc.prompt_last), rows(out, enc.prompt_last)  # (B, in), (B, out)
        entries = []
        for record, key, own in zip(batch, keys, outs, strict=True):
            if cfg.value_init == "rand":
                init = torch.rand(own.shape, device=own.device, dtype=own.dtype)
            else:
                init = own
            index, rule = self.layer.update_codebook(
                key, record.label, init, cfg.eps_init, cfg.eps_expand
            )
            self.rules[rule] += 1
            entries.append(index)
        return _Edit(enc, hidden), entries

    def _train(self, edit: _Edit, entries: list[int]) -> list[float]:
        """Train the values of ``entries``, one per row of the batch; final loss per edit."""
        cfg, enc = self.config, edit.enc
        start = self.block if edit.hidden is not None else None
        value = nn.Parameter(self.layer.values[entries].clone().float())  # (B, out)
        row = enc.target_mask.nonzero()[:, 0]  # (n_targets,) the edit each target belongs to
        count = torch.bincount(row, minlength=len(entries)).float()  # (B,)
        optimizer = torch.optim.Adam([value], lr=cfg.lr)
        with self._positions(enc.prompt_last):
            for _ in range(cfg.iterations):
                self.layer.train_value = value
                logits = target_logits(self.model, enc, start, edit.hidden)
                token_loss = F.cross_entropy(logits.float(), enc.target_ids, reduction="none")
                per_edit = torch.zeros_like(count).index_add_(0, row, token_loss) / count
                optimizer.zero_grad(set_to_none=True)
                per_edit.sum().backward()  # each value's gradient is its own edit's
                optimizer.step()
        self.layer.values[entries] = value.detach().to(self.layer.values.dtype)
        return per_edit.tolist()

    # -- inference ---------------------------------------------------------------------------

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Look the key at ``prompt_last`` up in the codebook; ``hit``: within an entry's ε."""
        lookup: dict[str, torch.Tensor] = {}
        info: dict[str, torch.Tensor] = {}
        with self._positions(prompt_last, lookup):
            yield info
        info["hit"] = lookup["hit"]

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            "keys": self.layer.keys.contiguous(),
            "values": self.layer.values.contiguous(),
            "radius": self.layer.radius.contiguous(),
        }
        return tensors, {
            "labels": list(self.layer.labels),
            "rules": dict(self.rules),
            "config": asdict(self.config),
        }

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        device = self.layer.keys.device
        self.layer.keys = tensors["keys"].to(device, self.layer.keys.dtype)
        self.layer.values = tensors["values"].to(device, self.layer.values.dtype)
        self.layer.radius = tensors["radius"].to(device, torch.float32)
        self.layer.labels = list(meta["labels"])
        self.rules = dict(meta.get("rules", self.rules))
