"""WISE: a side memory at one FFN value matrix, routed by activation (Wang et al., NeurIPS 2024).

The main memory W_v (one FFN's output matrix) stays frozen; the side memory W_v' starts as its
copy and takes the edits. For an input x with FFN activation a = A(x), the routing score is

    Δ_act(x) = ‖a (W_v' − W_v)‖₂,  averaged over the prompt's tokens          (Section 2.3.1)

and the side memory answers where Δ_act(x) ≥ act_ratio · min(Δ_act over the edits made).
Each edit trains W_v' by SGD on the target's NLL plus the margin loss that makes Δ_act large on
the edit and small on an irrelevant prompt x_i:

    L_a = [Δ(x_i) − α]₊ + [β − Δ(x_e)]₊ + [γ − (Δ(x_e) − Δ(x_i))]₊               (Eq. 4)

(each term averaged over its positive entries, over the edit's rows, as the reference does).
Knowledge sharding (Section 2.3.2): within a shard of ``save_freq`` edits only a random
``mask_ratio`` of W_v' gets gradients; each finished shard is set aside and W_v' starts from W_v
again. Every ``merge_freq`` edits the shards are TIES-merged into one memory. WISE-Retrieve
(the default) keeps each merged memory with its own threshold and routes each input to the
memory that fires most; WISE-Merge (``retrieve: false``) folds all into one merged memory.

Training rows: the edit after each context (nothing, then 10 greedy continuations of the
reference's seed words) plus one irrelevant prompt. The irrelevant prompts are CounterFact cases
outside the stream (``irrelevant_data``): never a stream record's subject or evaluated text.

Named differences from EasyEdit's code (zjunlp/EasyEdit, wise/WISE.py), all of which the paper
leaves open: Δ is averaged over prompt tokens only (EasyEdit: every token of each call, pads
and, at inference, the answer being scored included), one routing decision per row and not per
call, and ``activation_on_output: false`` follows the paper's formula, where EasyEdit applies
the model's activation function to both outputs first (``true``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines._common import block_of, ffn_activation, mean_stats
from baselines.one_layer import fc_layer, weight_out_in
from baselines.outside import outside_cases
from elder import trunk
from elder.editor import Editor, EditRecord
from elder.encoding import encode
from elder.models import LoadedModel, set_module
from elder.prefixes import generate_prefixes

SEED_WORDS = ("I", "You", "Because", "Yes", "Q: ")  # the reference's context seeds


@dataclass
class WISEConfig:
    """Hyperparameters of WISE; defaults are the reference's hparams/WISE/llama-7b.yaml."""

    module: str  # the FFN value matrix W_v, e.g. "model.layers.25.mlp.down_proj"
    edit_lr: float = 1.0  # SGD on W_v'
    n_iter: int = 70  # steps per edit (early stop: loss ≤ 0.02 and changing by ≤ 1e-4)
    weight_decay: float = 1e-5
    norm_constraint: float = 1.0  # W_v' stays within W_v ± this, elementwise
    mask_ratio: float = 0.2  # ρ: the share of W_v' one shard trains
    alpha: float = 5.0  # Δ(x_i) below α
    beta: float = 20.0  # Δ(x_e) above β
    gamma: float = 10.0  # Δ(x_e) − Δ(x_i) above γ
    act_ratio: float = 0.88  # threshold = act_ratio · the smallest Δ(x_e) of a memory's edits
    save_freq: int = 500  # edits per shard
    merge_freq: int = 1000  # edits between TIES merges (a multiple of save_freq)
    merge_density: float = 0.53  # TIES keeps this share of each shard's largest changes
    retrieve: bool = True  # WISE-Retrieve (true) or WISE-Merge (false)
    activation_on_output: bool = False  # EasyEdit's Δ = ‖act(W'a) − act(Wa)‖ (true)
    prefix_lengths: list[list[int]] = field(default_factory=lambda: [[5, 5], [10, 5]])
    irrelevant_data: str = "counterfact/counterfact-train.json"  # flattened CounterFact
    irrelevant_prompts: list[list[str]] | None = None  # [prompt, answer] pairs instead
    seed: int = 0  # shard masks and the order of the irrelevant prompts

    def __post_init__(self) -> None:
        checks = [
            (self.n_iter >= 1, "n_iter must be >= 1"),
            (0 < self.mask_ratio <= 1, "mask_ratio must be in (0, 1]"),
            (0 < self.merge_density <= 1, "merge_density must be in (0, 1]"),
            (self.save_freq >= 1, "save_freq must be >= 1"),
            (self.merge_freq % self.save_freq == 0, "merge_freq must be a multiple of save_freq"),
            (self.act_ratio > 0, "act_ratio must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"WISE: {message}")


def ties_merge(
    base: torch.Tensor, shards: list[torch.Tensor], weights: list[float], density: float
) -> torch.Tensor:
    """TIES: trim each shard's change to its top ``density`` magnitudes, elect a sign per entry
    from the weighted sum, and average the weighted changes that agree with it."""
    deltas = []
    for shard in shards:
        delta = shard - base
        k = int(density * delta.numel())
        keep = torch.zeros_like(delta, dtype=torch.bool)
        if k > 0:
            keep.view(-1)[delta.abs().view(-1).topk(k).indices] = True
        deltas.append(delta * keep)
    w = torch.tensor(weights, dtype=base.dtype, device=base.device).view(-1, *[1] * base.dim())
    weighted = torch.stack(deltas) * w  # (S, out, in)
    sign = torch.where(weighted.sum(0) >= 0, 1.0, -1.0).to(base.dtype)
    agree = torch.sign(weighted) == sign
    total = (w * agree).sum(0)
    return base + (weighted * agree).sum(0) / torch.where(total == 0, 1.0, total)


class WISELayer(nn.Module):
    """The main memory (the frozen layer), the side memory W_v' and the stored memories."""

    def __init__(
        self, base_layer: nn.Module, activation: nn.Module | None, act_ratio: float, retrieve: bool
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.activation = activation
        self.act_ratio, self.retrieve = act_ratio, retrieve
        W = weight_out_in(base_layer).detach()  # (out, in)
        self.side = nn.Parameter(W.clone())
        self.register_buffer("memories", W.new_empty(0, *W.shape))  # (M, out, in)
        self.min_act: list[float] = []  # per memory: the smallest Δ(x_e) of its edits
        self.side_min_act = float("inf")  # the same for the side memory's edits
        self.mode = "main"  # main | train | route
        self.prompt_mask: torch.Tensor | None = None  # (B, T) the tokens Δ averages over
        self.route: dict[str, torch.Tensor] = {}  # the rows' choice, kept over decode steps
        self.distances: torch.Tensor | None = None  # train mode: Δ of each row (B,)

    def weight_output(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        bias = getattr(self.base_layer, "bias", None)
        return F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))

    def delta(self, main: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Δ (B,): ‖other − main‖ per token, averaged over ``prompt_mask``."""
        if self.activation is not None:
            main, other = self.activation(main), self.activation(other)
        per_token = (other - main).float().norm(dim=-1)  # (B, T)
        mask = self.prompt_mask.to(per_token.dtype)
        return (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.base_layer(x)
        if self.mode == "main":
            return main
        side = self.weight_output(x, self.side)
        if self.mode == "train":
            self.distances = self.delta(main.detach(), side)
            return side
        outputs = [main, side, *(self.weight_output(x, m) for m in self.memories)]
        if "choice" not in self.route:  # the first call (the prompt): decide per row
            self.route.update(self.choose([self.delta(main, o) for o in outputs[1:]]))
        choice = self.route["choice"]  # (B,) 0 main, 1 side, 2.. memories
        stacked = torch.stack(outputs)  # (1 + 1 + M, B, T, out)
        return stacked[choice, torch.arange(x.shape[0], device=x.device)]

    def choose(self, deltas: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per row, the memory to answer from (0: main), by the reference's rules."""
        ratio = self.act_ratio
        d_side = deltas[0]
        if self.retrieve:  # the side memory if it fires, then any memory that fires more
            choice = torch.where(d_side >= ratio * self.side_min_act, 1, 0)
            best = d_side.clone()
            for i, d in enumerate(deltas[1:]):
                better = (d > best) & (d > ratio * self.min_act[i])
                choice = torch.where(better, 2 + i, choice)
                best = torch.where(better, d, best)
        else:  # one merged memory: main if neither fires, else the one that fires more
            threshold = ratio * min([self.side_min_act, *self.min_act])
            d_merged = deltas[1] if len(deltas) > 1 else torch.zeros_like(d_side)
            choice = torch.where(d_merged > d_side, 2, 1)
            choice = torch.where((d_side < threshold) & (d_merged < threshold), 0, choice)
        return {"choice": choice.long(), "side": (choice > 0).float()}


class WISE(Editor):
    """A routed side memory at ``module``, sharded and merged over the stream."""

    name = "wise"
    config_class = WISEConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        base = fc_layer(model, cfg.module)
        activation = ffn_activation(model) if cfg.activation_on_output else None
        self.layer = WISELayer(base, activation, cfg.act_ratio, cfg.retrieve)
        set_module(model.hf, cfg.module, self.layer)
        self.start = block_of(model, cfg.module)
        self.W0 = self.layer.side.detach().clone()
        self.shards: list[torch.Tensor] = []  # finished shards waiting for a merge
        self.shard_min_act: list[float] = []
        self.n_edits = 0
        self.templates: list[str] | None = None
        self.stream: list[EditRecord] = []
        self.pool: list[tuple[str, str]] | None = None
        self.mask = self.shard_mask(0)

    def extra_params(self) -> int:
        return self.layer.side.numel() * (1 + len(self.layer.memories) + len(self.shards))

    def check_stream(self, records: list[EditRecord]) -> None:
        self.stream = list(records)  # what the irrelevant prompts must stay out of

    # -- data --------------------------------------------------------------------------------

    def contexts(self) -> list[str]:
        """'' and 10 greedy continuations of the seed words (5 and 10 tokens), + ' '."""
        if self.templates is None:
            lengths = [[n, count] for n, count in self.config.prefix_lengths]
            prefixes = generate_prefixes(self.model, lengths, 0, words=SEED_WORDS, sample=False)
            self.templates = [""] + [p + " " for p in prefixes]
        return self.templates

    def irrelevant(self, n: int) -> tuple[str, str]:
        """The irrelevant prompt (and its answer) of the stream's n-th edit."""
        if self.pool is None:
            if self.config.irrelevant_prompts is not None:
                self.pool = [tuple(p) for p in self.config.irrelevant_prompts]
                random.Random(self.config.seed).shuffle(self.pool)
            else:
                cfg = self.config
                self.pool = outside_cases(cfg.irrelevant_data, self.stream, cfg.seed)
        return self.pool[n % len(self.pool)]

    def shard_mask(self, shard: int) -> torch.Tensor:
        """The entries of W_v' that shard ``shard`` trains: Bernoulli(mask_ratio), seeded."""
        gen = torch.Generator().manual_seed(self.config.seed * 100_003 + shard)
        mask = torch.rand(self.W0.shape, generator=gen) < self.config.mask_ratio
        return mask.to(self.W0.device)

    # -- the method --------------------------------------------------------------------------

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        out = mean_stats([self.edit_one(record) for record in batch])
        out["memories"] = float(len(self.layer.memories))
        return out

    def edit_one(self, record: EditRecord) -> dict[str, float]:
        cfg, layer = self.config, self.layer
        irrelevant = self.irrelevant(self.n_edits)
        contexts = self.contexts()
        enc = encode(
            self.model.tokenizer,
            [c + record.prompt for c in contexts] + [irrelevant[0]],
            [record.target] * len(contexts) + [irrelevant[1]],
            self.model.device,
        )
        positions = torch.arange(enc.input_ids.shape[1], device=enc.input_ids.device)
        layer.prompt_mask = (
            positions[None] <= enc.prompt_last[:, None]
        ) & enc.attention_mask.bool()
        hidden = trunk.block_input(self.model, self.start, enc)  # frozen below the layer
        target_row = enc.target_mask.nonzero()[:, 0]  # (n_targets,) the row of each target
        is_edit = target_row < len(contexts)
        counts = torch.bincount(target_row[is_edit], minlength=len(contexts)).clamp(min=1)
        optimizer = torch.optim.SGD([layer.side], lr=cfg.edit_lr, weight_decay=cfg.weight_decay)
        layer.mode, previous = "train", None  # the side memory answers every row
        try:
            for _ in range(cfg.n_iter):
                logits = trunk.target_logits_from(self.model, self.start, hidden, enc)
                token_nll = F.cross_entropy(logits.float(), enc.target_ids, reduction="none")
                per_row = torch.zeros(len(contexts), device=logits.device)
                per_row.index_add_(0, target_row[is_edit], token_nll[is_edit])
                nll = (per_row / counts).mean()
                d_edit, d_irr = layer.distances[:-1], layer.distances[-1:]  # (rows,), (1,)
                margin = (
                    _positive_mean(d_irr - cfg.alpha)
                    + _positive_mean(cfg.beta - d_edit)
                    + _positive_mean(d_irr[None] - d_edit[:, None] + cfg.gamma)
                )
                loss = nll + margin
                act = d_edit.mean().item()  # before this step, as the reference records it
                value = loss.item()
                if previous is not None and abs(value - previous) <= 1e-4 and value <= 0.02:
                    break  # converged: the reference's early stop
                previous = value
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                layer.side.grad *= self.mask  # knowledge sharding: this shard's entries only
                optimizer.step()
                with torch.no_grad():  # W_v' within W_v ± norm_constraint
                    c = cfg.norm_constraint
                    layer.side.copy_(torch.clamp(layer.side, self.W0 - c, self.W0 + c))
        finally:
            layer.mode, layer.prompt_mask, layer.distances = "main", None, None
        layer.side_min_act = min(layer.side_min_act, act)
        self.n_edits += 1
        if self.n_edits % cfg.save_freq == 0:
            self.save_shard()
        if self.n_edits % cfg.merge_freq == 0:
            self.merge()
        return {
            "nll": nll.item(),
            "margin": margin.item(),
            "act_edit": act,
            "act_irrelevant": d_irr.item(),
        }

    @torch.no_grad()
    def save_shard(self) -> None:
        """Set the side memory aside as a finished shard; the next one starts from W_v."""
        layer = self.layer
        self.shards.append(layer.side.detach().clone())
        self.shard_min_act.append(layer.side_min_act)
        layer.side.copy_(self.W0)
        layer.side_min_act = float("inf")
        self.mask = self.shard_mask(self.n_edits // self.config.save_freq)

    @torch.no_grad()
    def merge(self) -> None:
        """TIES-merge the waiting shards: a new memory (Retrieve) or into the merged one."""
        layer, n = self.layer, len(self.shards)
        if self.config.retrieve or len(layer.memories) == 0:
            shards, weights = self.shards, [1.0 / n] * n
        else:  # WISE-Merge: the old merged memory weighs 0.6 against the new shards' 0.4
            shards, weights = [*self.shards, layer.memories[0]], [0.4 / n] * n + [0.6]
        merged = ties_merge(self.W0, shards, weights, self.config.merge_density)
        min_act = min(self.shard_min_act + ([] if self.config.retrieve else layer.min_act))
        if self.config.retrieve:
            layer.memories = torch.cat([layer.memories, merged[None]])
            layer.min_act.append(min_act)
        else:
            layer.memories, layer.min_act = merged[None], [min_act]
        self.shards, self.shard_min_act = [], []

    # -- inference ---------------------------------------------------------------------------

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Route each row by Δ over its prompt; ``side``: a side memory answered it."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        layer = self.layer
        layer.prompt_mask = (positions[None] <= prompt_last[:, None]) & attention_mask.bool()
        layer.mode, layer.route = "route", {}
        info: dict[str, torch.Tensor] = {}
        try:
            yield info
        finally:
            info["side"] = layer.route.get("side", torch.zeros(input_ids.shape[0]))
            layer.mode, layer.prompt_mask, layer.route = "main", None, {}

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        layer = self.layer
        tensors = {"side": layer.side.detach(), "memories": layer.memories}
        if self.shards:
            tensors["shards"] = torch.stack(self.shards)
        tensors = {k: t.cpu().contiguous() for k, t in tensors.items()}
        meta = {
            "method": self.name,
            "module": self.config.module,
            "n_edits": self.n_edits,
            "side_min_act": None if layer.side_min_act == float("inf") else layer.side_min_act,
            "min_act": list(layer.min_act),
            "shard_min_act": list(self.shard_min_act),
            "templates": self.contexts(),
        }
        return tensors, meta

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("module") != self.config.module:
            raise ValueError(
                f"WISE state is for '{meta.get('module')}', not '{self.config.module}'"
            )
        layer = self.layer
        layer.side.copy_(tensors["side"].to(self.W0))
        layer.memories = tensors["memories"].to(self.W0)
        self.shards = list(tensors["shards"].to(self.W0)) if "shards" in tensors else []
        side_min_act = meta["side_min_act"]
        layer.side_min_act = float("inf") if side_min_act is None else float(side_min_act)
        layer.min_act = [float(a) for a in meta["min_act"]]
        self.shard_min_act = [float(a) for a in meta["shard_min_act"]]
        self.n_edits = int(meta["n_edits"])
        self.templates = list(meta["templates"])
        self.mask = self.shard_mask(self.n_edits // self.config.save_freq)


def _positive_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of the positive entries of ``x`` (0 if none): the reference's margin terms."""
    positive = x > 0
    return (x * positive).sum() / positive.sum().clamp(min=1)
