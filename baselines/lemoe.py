"""LEMoE: a mixture-of-experts bypass with module inserting and KV anchor routing.

Wang & Li, EMNLP 2024 (only the abstract and figure captions are available here; METHODS.md):
    h(x) = W0 x + g(i*|x) f_{i*}(x),   i* = argmax_i g(i|x),   g(i|x) = softmax_i(k_i · v_x)
with v_x = W_up SiLU(W_down e_x) and e_x the mean of the prompt's token embeddings (one route
per sequence). Module inserting: edit batch t adds expert f_t and key k_t; the experts and keys
of earlier batches are frozen. The same routing formula is used in training and inference.

Choices the abstract leaves open (each a config option):
- an expert is a LoRA-shaped bypass f_i(x) = (alpha/r) B_i A_i x of the wrapped layer
  (B zero-initialised, so inserting an expert leaves the function unchanged);
- ``projection``: "per_expert" (default; expert i has its own W_down/W_up, frozen with it, so an
  old route can never drift), "frozen" (one random projection, never trained) or "shared"
  (one projection trained by every batch: the literal reading, old routes may drift);
- the new key starts at its batch's mean projected embedding (the "anchor");
- training routes batch t to expert t, weighted by g(t|x), and adds ``route_weight`` ·
  (-log g(t|x)) so that the inference top-1 picks t for the batch's inputs; with
  ``route_memory`` the e_x of earlier edits (d floats each) enter that loss with their own
  experts, so the new key learns not to take their routes (only the new key and projection
  train, so this cannot move an old route, only keep the new expert off it);
- ``stop_loss``: a batch's training may end early once its loss is below it (off by default);
- ``order: kmeans`` (order planning): edits are buffered, ``plan_window`` at a time, grouped
  by K-means on e_x and trained in batches filled from one cluster each (see ``flush``).
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

from baselines._common import block_of, mean_stats, target_logits
from elder import trunk
from elder.editor import Editor, EditRecord
from elder.models import LoadedModel, get_module, set_module
from elder.molora import io_features

PROJECTIONS = ("per_expert", "frozen", "shared")


@dataclass
class LEMoEConfig:
    """Hyperparameters of LEMoE; lr and top-1 are the paper's, the rest documented choices."""

    module: str  # the FFN layer that gets the bypass, e.g. "model.layers.17.mlp.down_proj"
    r: int = 8  # rank of an expert
    alpha: float = 8.0  # expert scale alpha / r
    router_dim: int = 64  # width of W_down (e_x -> router_dim -> d)
    projection: str = "per_expert"  # per_expert | frozen | shared (see the module docstring)
    route_weight: float = 1.0  # weight of the routing loss -log g(own expert | x)
    route_memory: bool = True  # the routing loss also covers the e_x of every earlier edit
    lr: float = 2e-4  # AdamW
    iterations: int = 50  # optimisation steps per edit batch (at most, see stop_loss)
    stop_loss: float | None = None  # end a batch's training once its loss is below this
    order: str = "stream"  # "stream" (the runner's order) or "kmeans" (order planning)
    plan_window: int = 100  # edits buffered and reordered together when order=kmeans
    seed: int = 0  # initialisation of projections and experts, and K-means
    fast_path: bool = True  # cache the frozen blocks below the bypass layer while training

    def __post_init__(self) -> None:
        checks = [
            (self.r >= 1, f"r must be >= 1, got {self.r}"),
            (self.projection in PROJECTIONS, f"projection must be one of {PROJECTIONS}"),
            (self.order in ("stream", "kmeans"), "order must be 'stream' or 'kmeans'"),
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.plan_window >= 1, f"plan_window must be >= 1, got {self.plan_window}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"LEMoE: {message}")


class LEMoELayer(nn.Module):
    """A frozen layer plus inserted experts; each sequence uses its top-1 expert."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = io_features(base_layer)
        self.r, self.scale = r, alpha / r
        self.lora_A = nn.ParameterList()  # expert i: (r, in)
        self.lora_B = nn.ParameterList()  # expert i: (out, r)
        # Set per forward by the editor: each row's expert and gate g(i*|x); None = off.
        self.expert: torch.Tensor | None = None  # (B,) long
        self.gate: torch.Tensor | None = None  # (B,)

    def new_expert(self, generator: torch.Generator) -> None:
        """Insert an expert with ΔW = 0 and freeze the earlier ones."""
        ref = self.base_layer.weight
        a = torch.empty(self.r, self.in_features)
        bound = 1 / math.sqrt(self.in_features)  # as nn.Linear's kaiming_uniform(a=√5)
        a.uniform_(-bound, bound, generator=generator)
        for p in self.parameters():
            p.requires_grad_(False)
        self.lora_A.append(nn.Parameter(a.to(ref.device, ref.dtype)))
        self.lora_B.append(
            nn.Parameter(torch.zeros(self.out_features, self.r, device=ref.device, dtype=ref.dtype))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.expert is None:
            return out
        delta = torch.zeros_like(out)
        for i in self.expert.unique().tolist():
            row = self.expert == i  # (B,)
            z = x[row] @ self.lora_A[i].T  # (b, T, r)
            f = z @ self.lora_B[i].T * self.scale  # (b, T, out)
            delta[row] = (self.gate[row, None, None] * f).to(out.dtype)
        return out + delta


class Router(nn.Module):
    """KV anchor routing: v_x = W_up SiLU(W_down e_x), scores k_i · v_x (per-expert or shared)."""

    def __init__(self, dim: int, hidden: int, projection: str) -> None:
        super().__init__()
        self.dim, self.hidden, self.projection = dim, hidden, projection
        self.down = nn.ParameterList()  # (hidden, d), one per expert or one in all
        self.up = nn.ParameterList()  # (d, hidden)
        self.keys = nn.ParameterList()  # expert i: (d,)

    def _new_projection(self, generator: torch.Generator, device, dtype) -> None:
        for shape, fan_in, plist in (
            ((self.hidden, self.dim), self.dim, self.down),
            ((self.dim, self.hidden), self.hidden, self.up),
        ):
            w = torch.empty(shape).uniform_(-1, 1, generator=generator) / math.sqrt(fan_in)
            plist.append(nn.Parameter(w.to(device, dtype)))

    def project(self, e: torch.Tensor, i: int) -> torch.Tensor:
        """v_x of instance embeddings (B, d) under the projection of expert i -> (B, d)."""
        j = i if self.projection == "per_expert" else 0
        return F.silu(e @ self.down[j].T) @ self.up[j].T

    def scores(self, e: torch.Tensor) -> torch.Tensor:
        """k_i · v_x for every expert: (B, d) -> (B, n_experts)."""
        return torch.stack([self.project(e, i) @ k for i, k in enumerate(self.keys)], dim=-1)

    def new_expert(self, e: torch.Tensor, generator: torch.Generator) -> list[nn.Parameter]:
        """Insert key k_t (the batch's mean v_x), freeze the old ones; returns what trains."""
        for p in self.parameters():
            p.requires_grad_(False)
        if self.projection == "per_expert" or not len(self.down):
            self._new_projection(generator, e.device, e.dtype)
        t = len(self.keys)
        with torch.no_grad():
            anchor = self.project(e, t).mean(0)
        self.keys.append(nn.Parameter(anchor))
        trained = [self.keys[t]]
        if self.projection == "per_expert":
            trained += [self.down[t], self.up[t]]
        elif self.projection == "shared":
            trained += [self.down[0], self.up[0]]
        for p in trained:
            p.requires_grad_(True)
        return trained


class LEMoE(Editor):
    """LEMoE editor; build with the fields of :class:`LEMoEConfig`."""

    name = "lemoe"
    config_class = LEMoEConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.block = block_of(model, cfg.module)
        self.layer = LEMoELayer(get_module(model.hf, cfg.module), cfg.r, cfg.alpha)
        set_module(model.hf, cfg.module, self.layer)
        dim = model.hf.get_input_embeddings().weight.shape[1]
        self.router = Router(dim, cfg.router_dim, cfg.projection)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.memory = torch.empty(0, dim)  # e_x of every edit so far (route_memory)
        self.memory_expert = torch.empty(0, dtype=torch.long)  # (n,) the expert of each
        self.pending: list[EditRecord] = []  # order=kmeans: edits waiting to be planned
        self.batch_size = 0  # the stream's batch size, as seen in the first batch

    def extra_params(self) -> int:
        experts = [*self.layer.lora_A, *self.layer.lora_B]
        return sum(p.numel() for p in [*experts, *self.router.parameters()])

    @property
    def n_experts(self) -> int:
        return len(self.router.keys)

    def instance_embedding(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """e_x: mean token embedding over the positions in ``mask``: (B, T) -> (B, d)."""
        emb = self.hf.get_input_embeddings()(input_ids)  # (B, T, d)
        m = mask.to(emb.dtype)[..., None]
        return (emb * m).sum(1) / m.sum(1).clamp_min(1)

    @staticmethod
    def _prompt_mask(attention_mask: torch.Tensor, prompt_last: torch.Tensor) -> torch.Tensor:
        """(B, T) True at the prompt tokens: attended, and at or before ``prompt_last``."""
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        return attention_mask.bool() & (positions[None, :] <= prompt_last[:, None])

    def _route(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-1 expert and its gate g(i*|x) for instance embeddings (B, d)."""
        gate, expert = torch.softmax(self.router.scores(e).float(), dim=-1).max(dim=-1)
        return expert, gate

    # -- editing -----------------------------------------------------------------------------

    def _train(self, batch: list[EditRecord]) -> dict[str, float]:
        cfg = self.config
        enc = self.encode(batch)
        with torch.no_grad():
            prompt = self._prompt_mask(enc.attention_mask, enc.prompt_last)
            e = self.instance_embedding(enc.input_ids, prompt)  # (B, d)
        t = self.n_experts
        self.layer.new_expert(self.generator)
        params = [self.layer.lora_A[t], self.layer.lora_B[t]]
        params += self.router.new_expert(e, self.generator)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr)
        start = self.block if cfg.fast_path else None
        hidden = trunk.block_input(self.model, self.block, enc) if cfg.fast_path else None
        self.layer.expert = torch.full((len(batch),), t, device=self.model.device)
        own = torch.full((len(batch),), t, dtype=torch.long)
        if cfg.route_memory:
            e_all = torch.cat([e, self.memory.to(e.device, e.dtype)])  # (B + n, d)
            own = torch.cat([own, self.memory_expert])
        else:
            e_all = e
        own = own.to(e.device)
        updates = 0
        try:
            for _ in range(cfg.iterations):
                log_g = torch.log_softmax(self.router.scores(e_all).float(), dim=-1)  # (B+n, t+1)
                self.layer.gate = log_g[: len(batch), t].exp()
                logits = target_logits(self.model, enc, start, hidden)
                model_loss = F.cross_entropy(logits.float(), enc.target_ids)
                route_loss = F.nll_loss(log_g, own)
                loss = model_loss + cfg.route_weight * route_loss
                if cfg.stop_loss is not None and loss.item() < cfg.stop_loss:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                updates += 1
        finally:
            self.layer.expert = self.layer.gate = None
        for p in params:
            p.requires_grad_(False)
        self.memory = torch.cat([self.memory, e.detach().float().cpu()])
        self.memory_expert = torch.cat([self.memory_expert, torch.full((len(batch),), t)])
        with torch.no_grad():
            routed = (self._route(e)[0] == t).float().mean().item()
        return {
            "loss": loss.item(),
            "model_loss": model_loss.item(),
            "route_loss": route_loss.item(),
            "routed_to_new": routed,
            "updates": float(updates),  # optimizer steps taken (fewer than iterations: stop_loss)
        }

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        self.batch_size = self.batch_size or len(batch)
        if self.config.order == "stream":
            return self._train(batch)
        self.pending.extend(batch)
        if len(self.pending) >= self.config.plan_window:
            return self.flush()
        return {}

    def plan(self, records: list[EditRecord]) -> list[list[EditRecord]]:
        """Order planning: K-means on e_x, then batches filled from one cluster each."""
        from sklearn.cluster import KMeans

        n_batches = math.ceil(len(records) / self.batch_size)
        if n_batches < 2:
            return [records]
        enc = self.encode(records)
        with torch.no_grad():
            prompt = self._prompt_mask(enc.attention_mask, enc.prompt_last)
            e = self.instance_embedding(enc.input_ids, prompt).float().cpu()
        labels = KMeans(n_batches, n_init=10, random_state=self.config.seed).fit_predict(e.numpy())
        # Sorting by cluster keeps each cluster contiguous; chunks then rarely span two.
        order = sorted(range(len(records)), key=lambda i: (labels[i], i))
        ordered = [records[i] for i in order]
        return [ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)]

    def flush(self) -> dict[str, float]:
        """Plan and train the buffered edits (order=kmeans); a no-op when nothing waits."""
        if not self.pending:
            return {}
        records, self.pending = self.pending, []
        return mean_stats([self._train(batch) for batch in self.plan(records)])

    # -- inference ---------------------------------------------------------------------------

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Route each sequence to its top-1 expert from e_x over its prompt tokens; the route
        is fixed for the whole generation (one route per sequence)."""
        if not self.n_experts:
            yield {}
            return
        e = self.instance_embedding(input_ids, self._prompt_mask(attention_mask, prompt_last))
        expert, gate = self._route(e)
        self.layer.expert, self.layer.gate = expert, gate.to(e.dtype)
        try:
            yield {"gate": gate, "expert": expert.float()}
        finally:
            self.layer.expert = self.layer.gate = None

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Experts, router, the memory of e_x, the init generator and the buffered edits.

        Taking it trains nothing: edits still waiting for order planning are saved as such.
        """
        tensors = {
            f"layer.{k}": v.detach().contiguous()
            for k, v in self.layer.named_parameters()
            if not k.startswith("base_layer")
        }
        tensors.update(
            {f"router.{k}": v.detach().contiguous() for k, v in self.router.named_parameters()}
        )
        tensors["memory"] = self.memory.clone()  # (n, d)
        tensors["memory_expert"] = self.memory_expert.clone()  # (n,)
        tensors["generator"] = self.generator.get_state()
        meta = {
            "n_experts": self.n_experts,
            "n_projections": len(self.router.down),
            "batch_size": self.batch_size,
            "config": asdict(self.config),
            "pending": [asdict(r) for r in self.pending],
        }
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        ref = self.layer.base_layer.weight
        for name, plist in (
            ("layer.lora_A", self.layer.lora_A),
            ("layer.lora_B", self.layer.lora_B),
            ("router.down", self.router.down),
            ("router.up", self.router.up),
            ("router.keys", self.router.keys),
        ):
            plist.extend(
                nn.Parameter(tensors[f"{name}.{i}"].to(ref.device, ref.dtype), requires_grad=False)
                for i in range(len(plist), sum(k.startswith(name + ".") for k in tensors))
            )
        self.batch_size = meta["batch_size"]
        if "memory" in tensors:  # saved before 2026-12-01: experts and router only
            self.memory = tensors["memory"].float().clone()
            self.memory_expert = tensors["memory_expert"].long().clone()
            self.generator.set_state(tensors["generator"].clone())
        self.pending = [EditRecord(**r) for r in meta.get("pending", [])]
