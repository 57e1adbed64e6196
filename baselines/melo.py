"""MELO: neuron-indexed dynamic LoRA with a vector database (Yu et al., AAAI 2024).

Dynamic LoRA (Section "Sequential Editing with Dynamic LoRA"): every LoRA module holds blocks
of ``rank`` rows of A and B; edit batch t trains block t only, earlier blocks are frozen. As in
the reference code, the total rank is R = num_blocks · rank, the LoRA scale is alpha / R, and
each selected block of A and of B is multiplied by sqrt(num_blocks), so that
    y = W0 v + (alpha / R) · num_blocks · B_t A_t v.

Vector database (Section "Neuron Indexing with Vector Database"): the key of an input is the
output of ``key_module`` (a layer before every LoRA layer) at the last prompt token. Keys are
grouped in clusters (center = mean of its keys, radius, label). For each new key, with d the
distance to the nearest cluster center:
    d > r_nearest + init_radius  -> Add: a new cluster (radius init_radius)
    else, same label             -> Expand: the key joins; center = mean, radius = max(init_radius,
                                    largest distance of a member to the center)
    else                         -> Conflict: the old radius shrinks to d/2, a new cluster of
                                    radius d/2 is added, old members now outside are dropped.
Inference (Block Searching): nearest cluster; inside its radius -> the block of its nearest
key, else no LoRA (the base layer's output, bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines._common import block_of, rows, target_logits
from elder import trunk
from elder.editor import Editor, EditRecord, Encoded
from elder.models import LoadedModel, get_module, set_module
from elder.molora import io_features

NO_LORA = -1


@dataclass
class MELOConfig:
    """Hyperparameters of MELO; defaults are the reference's QA settings (METHODS.md)."""

    key_module: str  # layer whose output at the last prompt token is the key
    lora_modules: list[str]  # layers with a dynamic LoRA (all after key_module's block)
    rank: int = 2  # rows per block ("partial rank")
    num_blocks: int = 350  # blocks per LoRA module (the reference's num_block); one per batch
    alpha: float | None = None  # LoRA alpha; None = R = num_blocks · rank (reference: alpha = r)
    init_radius: float = 1.0  # initial cluster radius (the paper's GPT2-XL setting)
    lr: float = 1e-2  # Adam learning rate
    iterations: int = 50  # optimisation steps per edit batch
    lr_step: int = 20  # StepLR step size
    lr_gamma: float = 0.5  # StepLR decay
    fast_path: bool = True  # cache the frozen blocks below the first LoRA layer while training

    def __post_init__(self) -> None:
        self.lora_modules = list(self.lora_modules)
        checks = [
            (self.rank >= 1, f"rank must be >= 1, got {self.rank}"),
            (self.num_blocks >= 1, f"num_blocks must be >= 1, got {self.num_blocks}"),
            (self.init_radius > 0, f"init_radius must be > 0, got {self.init_radius}"),
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (len(self.lora_modules) >= 1, "lora_modules must name at least one layer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"MELO: {message}")


class DynamicLoRALayer(nn.Module):
    """A frozen layer plus blocks of LoRA rows; each sequence uses at most one block."""

    def __init__(self, base_layer: nn.Module, rank: int, num_blocks: int, alpha: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = io_features(base_layer)
        self.rank, self.num_blocks = rank, num_blocks
        total = rank * num_blocks  # R
        self.scale = alpha / total * num_blocks  # alpha/R, and sqrt(num_blocks) on A and on B
        self.init_bound = 1 / math.sqrt(total)  # kaiming_uniform(a=√5) of the reference's (in, R) A
        self.lora_A = nn.ParameterList()  # block b: (rank, in)
        self.lora_B = nn.ParameterList()  # block b: (out, rank), zero at creation
        self.block_ids: torch.Tensor | None = None  # (B,), NO_LORA where the LoRA is off

    def new_block(self) -> int:
        """Append a trainable block (ΔW = 0: B is zero) and freeze the earlier ones."""
        if len(self.lora_A) == self.num_blocks:
            raise RuntimeError(
                f"MELO: all {self.num_blocks} LoRA blocks are used; raise method.num_blocks"
            )
        ref = self.base_layer.weight
        a = torch.empty(self.rank, self.in_features, device=ref.device, dtype=ref.dtype)
        nn.init.uniform_(a, -self.init_bound, self.init_bound)
        b = torch.zeros(self.out_features, self.rank, device=ref.device, dtype=ref.dtype)
        for p in self.parameters():
            p.requires_grad_(False)
        self.lora_A.append(nn.Parameter(a))
        self.lora_B.append(nn.Parameter(b))
        return len(self.lora_A) - 1

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(v)
        ids = self.block_ids
        if ids is None or not len(self.lora_A) or not (ids != NO_LORA).any():
            return out
        delta = torch.zeros_like(out)
        for block in ids.unique().tolist():
            if block == NO_LORA:
                continue
            row = ids == block  # (B,)
            z = v[row] @ self.lora_A[block].T  # (b, T, rank)
            delta[row] = (z @ self.lora_B[block].T * self.scale).to(out.dtype)  # (b, T, out)
        return out + delta


class VectorDatabase:
    """Clusters of keys; each key points to the LoRA block trained with it."""

    def __init__(self, init_radius: float) -> None:
        self.init_radius = init_radius
        self.centers: list[torch.Tensor] = []  # cluster c: (d,)
        self.radii: list[float] = []
        self.labels: list[str] = []
        self.keys: list[torch.Tensor] = []  # cluster c: (n_c, d)
        self.blocks: list[list[int]] = []  # cluster c: block of each key
        self.conflicts = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self.centers)

    def _nearest(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance to and index of the nearest cluster center: (B, d) -> (B,), (B,)."""
        return torch.cdist(query.float(), torch.stack(self.centers).float()).min(dim=1)

    def _add(self, key: torch.Tensor, label: str, block: int, radius: float) -> None:
        self.centers.append(key)
        self.radii.append(radius)
        self.labels.append(label)
        self.keys.append(key[None])
        self.blocks.append([block])

    def insert(self, key: torch.Tensor, label: str, block: int) -> str:
        """Place one edit's key (d,) by the Add / Expand / Conflict rules; returns the rule."""
        key = key.detach().float()
        if not self.centers:
            self._add(key, label, block, self.init_radius)
            return "add"
        dist, c = (t.item() for t in self._nearest(key[None]))
        if dist > self.radii[c] + self.init_radius:
            self._add(key, label, block, self.init_radius)
            return "add"
        if self.labels[c] == label:
            self.keys[c] = torch.cat([self.keys[c], key[None]])
            self.blocks[c].append(block)
            self.centers[c] = self.keys[c].mean(0)
            spread = (self.keys[c] - self.centers[c]).norm(dim=-1).max().item()
            self.radii[c] = max(spread, self.init_radius)
            return "expand"
        self.radii[c] = dist / 2 - 1e-5
        self._add(key, label, block, dist / 2 + 1e-5)
        inside = (self.keys[c] - self.centers[c]).norm(dim=-1) <= self.radii[c]
        self.forgotten += int((~inside).sum())
        self.keys[c] = self.keys[c][inside]
        self.blocks[c] = [
            b for b, keep in zip(self.blocks[c], inside.tolist(), strict=True) if keep
        ]
        if not len(self.keys[c]):  # as the reference: the center stays, pointing to no block
            self.keys[c], self.blocks[c] = self.centers[c][None], [NO_LORA]
        self.conflicts += 1
        return "conflict"

    def search(self, query: torch.Tensor) -> torch.Tensor:
        """LoRA block of each query (B, d) -> (B,) long, NO_LORA outside every radius."""
        found = torch.full((len(query),), NO_LORA, dtype=torch.long)
        if not self.centers:
            return found
        dist, cluster = self._nearest(query)
        for i, (d, c) in enumerate(zip(dist.tolist(), cluster.tolist(), strict=True)):
            if d <= self.radii[c]:
                nearest = (self.keys[c] - query[i].float()).norm(dim=-1).argmin().item()
                found[i] = self.blocks[c][nearest]
        return found

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"db.keys.{c}": k.contiguous() for c, k in enumerate(self.keys)}
        if self.centers:
            tensors["db.centers"] = torch.stack(self.centers).contiguous()
        meta = {
            "radii": self.radii,
            "labels": self.labels,
            "blocks": self.blocks,
            "conflicts": self.conflicts,
            "forgotten": self.forgotten,
        }
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        n = len(meta["radii"])
        self.centers = list(tensors["db.centers"].float()) if n else []
        self.keys = [tensors[f"db.keys.{c}"].float() for c in range(n)]
        self.radii, self.labels = list(meta["radii"]), list(meta["labels"])
        self.blocks = [list(b) for b in meta["blocks"]]
        self.conflicts, self.forgotten = meta["conflicts"], meta["forgotten"]


class MELO(Editor):
    """MELO editor; build with the fields of :class:`MELOConfig`."""

    name = "melo"
    config_class = MELOConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.key_block = block_of(model, cfg.key_module)
        self.start = min(block_of(model, name) for name in cfg.lora_modules)
        if self.key_block >= self.start:
            raise ValueError(
                f"MELO: key_module (block {self.key_block}) must come before every LoRA layer "
                f"(first at block {self.start}): the block is chosen before any LoRA runs"
            )
        self.key_layer = get_module(model.hf, cfg.key_module)
        alpha = cfg.alpha if cfg.alpha is not None else cfg.rank * cfg.num_blocks
        self.layers: list[DynamicLoRALayer] = []
        for name in cfg.lora_modules:
            layer = DynamicLoRALayer(get_module(model.hf, name), cfg.rank, cfg.num_blocks, alpha)
            set_module(model.hf, name, layer)
            self.layers.append(layer)
        self.database = VectorDatabase(cfg.init_radius)
        self.rules: dict[str, int] = {"add": 0, "expand": 0, "conflict": 0}

    def extra_params(self) -> int:
        return sum(p.numel() for layer in self.layers for p in (*layer.lora_A, *layer.lora_B))

    @contextmanager
    def _indexing(self, prompt_last: torch.Tensor):
        """Search the database once per sequence, at the key layer, before any LoRA runs.

        The first forward pass fixes each sequence's block; later passes (decode steps of
        ``generate``) keep it.
        """
        state: dict[str, torch.Tensor] = {}

        def hook(module, args, output):
            if "blocks" in state:
                return
            state["blocks"] = self.database.search(rows(output, prompt_last).cpu())
            for layer in self.layers:
                layer.block_ids = state["blocks"].to(output.device)

        handle = self.key_layer.register_forward_hook(hook)
        try:
            yield state
        finally:
            handle.remove()
            for layer in self.layers:
                layer.block_ids = None

    # -- editing -----------------------------------------------------------------------------

    def _keys(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Keys (B, d) of a batch and, on the fast path, the input of the first LoRA block."""
        captured: dict[str, torch.Tensor] = {}
        handle = self.key_layer.register_forward_hook(
            lambda m, a, out: captured.__setitem__("out", out)
        )
        try:
            if self.config.fast_path:
                hidden = trunk.block_input(self.model, self.start, enc)
            else:
                hidden = None
                with torch.no_grad():
                    self.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        finally:
            handle.remove()
        return rows(captured["out"], enc.prompt_last).detach(), hidden

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        cfg = self.config
        enc = self.encode(batch)
        keys, hidden = self._keys(enc)
        block = [layer.new_block() for layer in self.layers][0]
        for key, record in zip(keys.cpu(), batch, strict=True):
            self.rules[self.database.insert(key, record.label, block)] += 1
        params = [p for layer in self.layers for p in (layer.lora_A[block], layer.lora_B[block])]
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.lr_gamma)
        ids = torch.full((len(batch),), block, device=self.model.device)
        start = self.start if cfg.fast_path else None
        try:
            for layer in self.layers:
                layer.block_ids = ids  # training: the whole batch uses its own block
            for _ in range(cfg.iterations):
                logits = target_logits(self.model, enc, start, hidden)
                loss = F.cross_entropy(logits.float(), enc.target_ids)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
        finally:
            for layer in self.layers:
                layer.block_ids = None
        for p in params:
            p.requires_grad_(False)
        return {
            "loss": loss.item(),
            "clusters": float(len(self.database)),
            "conflicts": float(self.database.conflicts),
        }

    # -- inference ---------------------------------------------------------------------------

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Search the database at ``prompt_last``; ``hit``: the key fell in a cluster."""
        info: dict[str, torch.Tensor] = {}
        with self._indexing(prompt_last) as state:
            yield info
        info["hit"] = state["blocks"] != NO_LORA

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, db_meta = self.database.state()
        for i, layer in enumerate(self.layers):
            for b in range(len(layer.lora_A)):
                tensors[f"lora_A.{i}.{b}"] = layer.lora_A[b].detach().contiguous()
                tensors[f"lora_B.{i}.{b}"] = layer.lora_B[b].detach().contiguous()
        meta = {
            "blocks_used": len(self.layers[0].lora_A),
            "database": db_meta,
            "rules": dict(self.rules),
            "config": asdict(self.config),
        }
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        for i, layer in enumerate(self.layers):
            for b in range(meta["blocks_used"]):
                if b >= len(layer.lora_A):
                    layer.new_block()
                layer.lora_A[b].data.copy_(tensors[f"lora_A.{i}.{b}"])
                layer.lora_B[b].data.copy_(tensors[f"lora_B.{i}.{b}"])
                layer.lora_A[b].requires_grad_(False)
                layer.lora_B[b].requires_grad_(False)
        self.database.load_state(tensors, meta["database"])
        self.rules = dict(meta.get("rules", self.rules))
