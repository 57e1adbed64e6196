"""ELDER: lifelong editing with a mixture of LoRAs, a guided loss and deferral.

Section "Method" of Li et al., AAAI 2025: MoLoRA modules on the FC layer of L consecutive
blocks, one routing per sequence from the query vector (at the last prompt token: the input
of the FC layer in ``query_block``, as the reference code routes, or the hidden state
entering that block), the guided loss towards pre-assigned allocations, and Algorithm 1's
deferral on the Hamming distance between allocation codes. Options beyond the paper (issue
#24, off by default) route by the nearest stored query and rehearse stored edits
(``elder.memory``), and protect what an edit trained (``elder.protect``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import torch
import torch.nn.functional as F

from elder import saved, trunk
from elder.allocation import AllocationTable, min_hamming, pack, topk_code
from elder.config import ELDERConfig, upgrade
from elder.editor import Editor, EditRecord, Encoded, check_subjects
from elder.encoding import last_mention
from elder.memory import QueryMemory, Rehearsal, pool
from elder.models import LoadedModel, get_module, set_module
from elder.molora import MoLoRALayer, io_features
from elder.prefixes import generate_prefixes
from elder.protect import NullSpace
from elder.step import adam, check_device, iterate


def guided_loss(scores: torch.Tensor, preset: torch.Tensor) -> torch.Tensor:
    """L_guide = Σ_layers Σ_{j ∈ preset} -log s_{l,j} per sequence; scores (B, L, N) -> (B,)."""
    return -scores.gather(-1, preset).clamp_min(1e-12).log().sum((1, 2))


class ELDER(Editor):
    """Mixture-of-LoRA editor; build with the fields of :class:`ELDERConfig`."""

    name = "elder"
    config_class = ELDERConfig
    inference_options = frozenset({"eps", "radius"})  # only decide, at inference, who defers

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        check_device(cfg.step, model.device)
        n_blocks = len(model.block_list)
        if cfg.first_layer + cfg.L > n_blocks:
            raise ValueError(
                f"ELDER: layers {cfg.first_layer}..{cfg.first_layer + cfg.L - 1} "
                f"do not exist: {model.name} has {n_blocks} blocks"
            )
        if cfg.query_module is not None:
            query_dim = io_features(get_module(model.hf, cfg.query_module))[0]
        else:
            hf_cfg = model.hf.config
            query_dim = hf_cfg.hidden_size if hasattr(hf_cfg, "hidden_size") else hf_cfg.n_embd
        self.layers: list[MoLoRALayer] = []
        for name in cfg.target_modules:
            base = get_module(model.hf, name)
            layer = MoLoRALayer(
                base, query_dim, cfg.N, cfg.r, cfg.alpha, cfg.lora_init,
                frozen_B=cfg.protect == "null_space",
            )  # fmt: skip
            set_module(model.hf, name, layer)
            self.layers.append(layer)
        self.null_space = None
        if cfg.protect == "null_space":
            in_features = self.layers[0].lora_A.shape[-1]
            self.null_space = NullSpace(
                cfg.L, cfg.N, cfg.r, in_features, cfg.protect_tol, model.device
            )
        self.allocations = AllocationTable(cfg.L, cfg.N, cfg.k, seed=cfg.allocation_seed)
        self.codes = torch.empty(0, (cfg.L * cfg.N + 7) // 8, dtype=torch.uint8)  # packed
        self.memory = QueryMemory() if cfg.route == "memory" else None
        self.rehearsal = Rehearsal(seed=cfg.allocation_seed) if cfg.rehearse else None
        self.context_prefixes: list[str] | None = None  # sampled at the first edit (prefixes)
        self.optimizer = self._new_optimizer()

    @classmethod
    def upgrade_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return upgrade(config)

    def label_of(self, record: EditRecord) -> str:
        """The label whose allocation the edit is guided to (``label``: the fact or the target)."""
        return record.fact_label if self.config.label == "fact" else record.label

    def parameters(self) -> list[torch.nn.Parameter]:
        """What edit() trains: LoRAs and routers (``route=memory``: the LoRAs alone;
        ``protect``: their A alone)."""
        routers = self.config.route == "router"
        frozen_B = self.null_space is not None
        return [
            p
            for layer in self.layers
            for p in ((layer.router.weight,) if routers else ())
            + (layer.lora_A,)
            + (() if frozen_B else (layer.lora_B,))
        ]

    def memory_bytes(self) -> int:
        """What the options of issue #24 store beside the parameters; grows with the stream."""
        parts = (self.memory, self.rehearsal, self.null_space)
        return sum(part.nbytes() for part in parts if part is not None)

    def extra_params(self) -> int:
        """The parameters the edited model adds: what edit() trains, and the frozen B of
        ``protect``, which every edited output goes through. With ``route=memory`` the routers
        are still built (one state layout for every config) but never used: not counted."""
        frozen = [layer.lora_B for layer in self.layers] if self.null_space is not None else []
        return sum(p.numel() for p in self.parameters() + frozen)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = self.parameters()
        for p in params:
            p.requires_grad_(True)
        return adam(params, self.config.lr, self.config.step)

    def _schedule(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """A fresh Adam for this batch and its StepLR (``optimizer=per_batch``), or None."""
        cfg = self.config
        if cfg.optimizer == "stream":
            return None
        self.optimizer = self._new_optimizer()
        if not cfg.lr_step:
            return None
        return torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_step, cfg.lr_gamma)

    def _query_module(self) -> torch.nn.Module:
        """The module whose input is the query: the FC layer of ``query_block``, or the block."""
        cfg = self.config
        if cfg.query_module is not None:
            return get_module(self.hf, cfg.query_module)
        return self.model.block_list[cfg.query_block]

    # -- routing -----------------------------------------------------------------------------

    @torch.no_grad()
    def query(self, enc: Encoded, edits: list[EditRecord] | None = None) -> torch.Tensor:
        """The routing query of each sequence (B, d): the query module's input at the last
        prompt token (or its mean over the prompt, ``query_pool``); nothing above the query
        module is run. ``query_pool=subject``: the edits' own queries at their subjects' last
        tokens, or without ``edits`` each input's set of prompt tokens (B, T, d)."""
        h = trunk.module_input(self.model, self._query_module(), enc)  # (B, T, d)
        subject_last = None
        if edits is not None and self.config.query_pool == "subject":
            tok = self.model.tokenizer
            subject_last = torch.tensor(
                [last_mention(tok, r.prompt, r.subject) for r in edits],
                device=enc.input_ids.device,
            )
        return pool(h, enc.attention_mask, enc.prompt_last, self.config.query_pool, subject_last)

    def scores(self, query: torch.Tensor) -> torch.Tensor:
        """Router scores of every MoLoRA layer: query (B, d) -> (B, L, N)."""
        return torch.stack([layer.scores(query) for layer in self.layers], dim=1)

    def allocation_code(self, query: torch.Tensor) -> torch.Tensor:
        """Bit-packed allocation codes of queries (B, d) -> (B, ceil(L·N/8)) uint8."""
        with torch.no_grad():
            return pack(topk_code(self.scores(query), self.config.k)).cpu()

    def defers(self, distance: torch.Tensor) -> torch.Tensor:
        """Algorithm 1's deferral: an input whose allocation code lies at Hamming distance ε or
        more from every stored edit code goes to the unedited model. distance (B,) -> (B,)."""
        return distance >= self.config.eps

    def _route(
        self, query: torch.Tensor, preset: torch.Tensor | None = None, defer: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Set every layer's gates for this batch; returns scores (B, L, N) (None where
        ``route=memory``) and the active rows."""
        if self.config.route == "memory":
            return None, self._route_by_memory(query, preset, defer)
        s = self.scores(query)  # (B, L, N)
        chosen = preset if preset is not None else s.topk(self.config.k, dim=-1).indices
        gates = torch.zeros_like(s).scatter(-1, chosen, s.gather(-1, chosen))  # raw scores
        active = None
        if defer:
            dist = min_hamming(self.allocation_code(query), self.codes)
            active = ~self.defers(dist).to(query.device)  # (B,)
        for i, layer in enumerate(self.layers):
            layer.gates, layer.active = gates[:, i], active
        return s, active

    def _route_by_memory(
        self, query: torch.Tensor, preset: torch.Tensor | None, defer: bool
    ) -> torch.Tensor | None:
        """``route=memory``: the allocation of the nearest stored query (or ``preset``), each
        of its LoRAs gated 1/k; deferred beyond ``radius``. Returns the active rows."""
        cfg = self.config
        if preset is None and not len(self.memory):  # nothing stored: every row is the base's
            return query.new_zeros(query.shape[0], dtype=torch.bool) if defer else None
        active = None
        if preset is None or defer:  # training (a preset, no deferral) needs no look-up
            distance, index = self.memory.nearest(query)
            if preset is None:
                preset = self.memory.allocations[index].to(query.device)  # (B, L, k)
            if defer:
                active = (distance <= cfg.radius).to(query.device)
        gates = self._preset_gates(preset, query)
        for i, layer in enumerate(self.layers):
            layer.gates, layer.active = gates[:, i], active
        return active

    def _preset_gates(self, preset: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Gates of allocations (B, L, k): 1/k at each allocated LoRA -> (B, L, N)."""
        cfg = self.config
        gates = like.new_zeros(preset.shape[0], cfg.L, cfg.N)
        return gates.scatter(-1, preset, 1 / cfg.k)

    def _clear(self) -> None:
        for layer in self.layers:
            layer.gates = layer.active = None

    @contextmanager
    def routing(
        self,
        attention_mask: torch.Tensor,
        prompt_last: torch.Tensor,
        preset: torch.Tensor | None = None,
        defer: bool = False,
    ):
        """Route each sequence once, from the input of the query module at ``prompt_last``
        (or its mean over the prompt, ``query_pool``).

        Within the context the first forward pass fixes the mixture; later passes (decode
        steps of ``generate``, which see one token) keep it.
        """
        state: dict[str, torch.Tensor | None] = {}

        def hook(module, args, kwargs):
            if "query" in state:
                return
            h = args[0] if args else kwargs["hidden_states"]  # (B, T, d)
            query = pool(h, attention_mask, prompt_last, self.config.query_pool)
            state["query"] = query.detach()  # (B, d)
            state["scores"], state["active"] = self._route(state["query"], preset, defer)

        handle = self._query_module().register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield state
        finally:
            handle.remove()
            self._clear()

    # -- editing -----------------------------------------------------------------------------

    def aux_loss(self, scores: torch.Tensor | None, preset: torch.Tensor) -> torch.Tensor:
        """Auxiliary routing loss of the batch; scores (B, L, N), preset (B, L, k). None
        without routers (``route=memory``)."""
        if scores is None:
            return preset.new_zeros((), dtype=torch.float32)
        if self.config.aux_loss == "guided":
            return guided_loss(scores, preset).mean()  # averaged over the batch
        if self.config.aux_loss == "balance":
            # Switch Transformer: N · Σ_i f_i P_i per layer, f_i = share of routed slots.
            top = topk_code(scores.detach(), self.config.k).view_as(scores).float()
            f = top.mean(0) / self.config.k  # (L, N)
            p = scores.mean(0)  # (L, N)
            return self.config.N * (f * p).sum()
        return scores.new_zeros(())

    def check_stream(self, records: list[EditRecord]) -> None:
        if self.config.query_pool == "subject":
            check_subjects("ELDER query_pool=subject", records)
        labels = {self.label_of(r) for r in records} | set(self.allocations.by_label)
        if len(labels) > self.allocations.capacity:
            cfg = self.config
            raise ValueError(
                f"ELDER: the stream has {len(labels)} distinct labels, but L={cfg.L}, N={cfg.N}, "
                f"k={cfg.k} give only C({cfg.N},{cfg.k})^{cfg.L} = {self.allocations.capacity} "
                "distinct allocations (one per label): raise L or N, or edit fewer facts"
            )

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        cfg = self.config
        replay = self.rehearsal.sample(cfg.rehearse) if self.rehearsal else []
        rows = batch + self._in_contexts(batch) + replay  # the new edits first
        enc = self.encode(rows)
        preset = self.allocations.batch([self.label_of(r) for r in rows]).to(self.model.device)
        train_preset = preset if cfg.routing == "hard" or cfg.route == "memory" else None
        scheduler = self._schedule()
        query = self.query(enc, rows)  # (B, d), read below the first MoLoRA layer
        packed = None
        if cfg.fast_path:  # nothing below the first MoLoRA layer trains: it runs once per batch
            hidden = trunk.block_input(self.model, cfg.first_layer, enc)  # (B, T, d)
            packed = trunk.pack(hidden, enc)  # its real tokens in one row, (1, n, d)
            del hidden
        # stop_loss: once the batch is fitted, no step moves the shared LoRAs further
        fitted = (lambda out: out[1].item() < cfg.stop_loss) if cfg.stop_loss else None
        (loss, model_loss, aux), steps = iterate(
            lambda: self._losses(enc, query, packed, train_preset, preset),
            self._update,
            cfg.iterations,
            scheduler.step if scheduler else lambda: None,
            cfg.step,
            fitted,
            self.model.device,
        )
        self.optimizer.zero_grad(set_to_none=True)  # (cuda_graph: frees the graph's gradients)
        new = slice(0, len(batch))
        self._store(batch, query[new], preset[new])
        if self.null_space is not None:
            self._protect(batch, preset[new])
        stats = {"loss": loss.item(), "model_loss": model_loss.item(), "aux_loss": aux.item()}
        if cfg.stop_loss:
            stats["iterations"] = steps
        if self.memory or self.rehearsal:
            stats |= {"rehearsed": len(replay), "memory_mb": self.memory_bytes() / 2**20}
        if self.null_space is not None:
            ranks = self.null_space.ranks()
            stats["protected_dims"] = ranks.float().mean().item()
            stats["free_dims_min"] = self.null_space.in_features - ranks.max().item()
        return stats

    def _losses(
        self,
        enc: Encoded,
        query: torch.Tensor,
        packed: trunk.Packed | None,
        train_preset: torch.Tensor | None,
        preset: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One iteration's (loss, model loss, auxiliary loss): on the packed batch (the fast
        path) or, without one, a full forward with the routing hook (the plain path)."""
        if packed is not None:
            try:
                scores, _ = self._route(query, train_preset)
                self._spread(packed)
                logits = trunk.packed_target_logits_from(
                    self.model, self.config.first_layer, packed
                )
            finally:
                self._clear()
        else:
            with self.routing(enc.attention_mask, enc.prompt_last, train_preset) as state:
                logits = trunk.target_logits(self.model, enc)
            scores = state["scores"]
        model_loss = F.cross_entropy(logits.float(), enc.target_ids)
        aux = self.aux_loss(scores, preset)
        return model_loss + self.config.lam * aux, model_loss, aux

    def _update(self, losses: tuple[torch.Tensor, ...]) -> None:
        """One optimizer step on the loss; ``protect``: then A back onto its anchors."""
        self.optimizer.zero_grad(set_to_none=True)
        losses[0].backward()
        self.optimizer.step()
        if self.null_space is not None:
            for i, layer in enumerate(self.layers):
                self.null_space.project(i, layer.lora_A)

    def _spread(self, packed: trunk.Packed) -> None:
        """Give each packed token its sequence's gates: (B, N) -> (1, n, N) in every layer."""
        for layer in self.layers:
            layer.gates = layer.gates[packed.sequence][None]

    @torch.no_grad()
    def _protect(self, batch: list[EditRecord], preset: torch.Tensor) -> None:
        """Add the FC inputs of the batch's edits, under their allocations preset (B, L, k)
        and with the LoRAs as trained, to the basis of each allocated LoRA: every real token
        but each sequence's last, whose state no target prediction reads."""
        enc = self.encode(batch)
        packed = trunk.pack(trunk.block_input(self.model, self.config.first_layer, enc), enc)
        try:
            gates = self._preset_gates(preset, packed.hidden)  # (B, L, N); no query needed
            for i, layer in enumerate(self.layers):
                layer.gates = gates[:, i]
            self._spread(packed)
            inputs = trunk.packed_module_inputs(
                self.model, self.config.first_layer, packed, self.layers
            )  # per layer (n, in)
        finally:
            self._clear()
        seq = packed.sequence
        read = torch.cat([seq[1:] == seq[:-1], seq.new_zeros(1, dtype=torch.bool)])  # (n,)
        for i, (v, layer) in enumerate(zip(inputs, self.layers, strict=True)):
            on = preset[:, i][seq]  # (n, k): the LoRAs each token's edit uses
            for e in on.unique().tolist():
                rows = read & (on == e).any(-1)
                self.null_space.add(i, e, v[rows], layer.lora_A[e])

    def _in_contexts(self, batch: list[EditRecord]) -> list[EditRecord]:
        """Each edit after each context prefix (``prefixes``), sampled once from the unedited
        model: before the first edit every LoRA's ΔW is zero, so the model is the base model."""
        if not self.config.prefixes:
            return []
        if self.context_prefixes is None:
            lengths = [[10, self.config.prefixes]]
            self.context_prefixes = generate_prefixes(
                self.model, lengths, self.config.allocation_seed
            )
        return [  # keeps the edit's fact, so the prefixed rows share its allocation
            replace(r, prompt=f"{prefix}. {r.prompt}", fact=r.fact_label)
            for r in batch
            for prefix in self.context_prefixes
        ]

    def _store(self, batch: list[EditRecord], query: torch.Tensor, preset: torch.Tensor) -> None:
        """Keep what deferral and the options of issue #24 look up: the allocation codes (of
        the routers' top-k, or with ``route=memory`` of the preset), queries and texts."""
        if self.memory is not None:
            self.memory.add(query, preset)
            code = pack(self._preset_gates(preset, query).flatten(1) > 0).cpu()
        else:
            code = self.allocation_code(query)
        self.codes = torch.cat([self.codes, code])
        if self.rehearsal is not None:
            self.rehearsal.add(batch)

    # -- inference ---------------------------------------------------------------------------

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Route each sequence once, deferring (``defer``) as Algorithm 1 says."""
        info: dict[str, torch.Tensor] = {}
        with self.routing(attention_mask, prompt_last, defer=self.config.defer) as state:
            yield info
        if state.get("active") is not None:
            info["deferred"] = ~state["active"]

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Routers, LoRAs, stored codes, the allocation table and (carried-over) Adam state."""
        tensors: dict[str, torch.Tensor] = {"codes": self.codes}
        for i, layer in enumerate(self.layers):
            tensors[f"layers.{i}.router"] = layer.router.weight  # (N, d)
            tensors[f"layers.{i}.lora_A"] = layer.lora_A  # (N, r, in)
            tensors[f"layers.{i}.lora_B"] = layer.lora_B  # (N, out, r)
        table, table_meta = self.allocations.state()
        tensors.update({f"allocation.{k}": v for k, v in table.items()})
        opt, opt_meta = saved.optimizer_state(self.optimizer)
        tensors.update({f"optimizer.{k}": v for k, v in opt.items()})
        meta = {
            "config": asdict(self.config),
            "allocation": table_meta,
            "optimizer": opt_meta,
        }
        if self.memory is not None:
            tensors.update({f"memory.{k}": v for k, v in self.memory.state().items()})
        if self.null_space is not None:
            tensors.update({f"null_space.{k}": v for k, v in self.null_space.state().items()})
        if self.context_prefixes is not None:
            meta["context_prefixes"] = self.context_prefixes
        if self.rehearsal is not None:
            rehearsal, meta["rehearsal"] = self.rehearsal.state()
            tensors.update({f"rehearsal.{k}": v for k, v in rehearsal.items()})
        return {k: v.detach().clone() for k, v in tensors.items()}, meta  # a snapshot

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore :meth:`state` into an editor built with the same structural config."""
        mine, theirs = asdict(self.config), upgrade(meta["config"])  # as written then
        structural = (
            "layer_pattern", "first_layer", "query_block", "query", "query_pool", "L", "N", "k",
            "r", "route", "protect",
        )  # fmt: skip
        differ = [
            f"{k}={theirs.get(k)!r} (here {mine[k]!r})"
            for k in structural
            if theirs.get(k) != mine[k]
        ]
        if (theirs.get("rehearse", 0) > 0) != (mine["rehearse"] > 0):  # stored texts or none
            differ.append(f"rehearse={theirs.get('rehearse', 0)} (here {mine['rehearse']})")
        if differ:
            raise ValueError(f"ELDER: the saved state was made with {', '.join(differ)}")
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                for name, param in (
                    ("router", layer.router.weight),
                    ("lora_A", layer.lora_A),
                    ("lora_B", layer.lora_B),
                ):
                    param.copy_(tensors[f"layers.{i}.{name}"])
        self.codes = tensors["codes"].to(torch.uint8).clone()
        self.allocations.load_state(saved.part(tensors, "allocation"), meta["allocation"])
        if self.memory is not None:
            self.memory.load_state(saved.part(tensors, "memory"))
        if self.null_space is not None:
            self.null_space.load_state(saved.part(tensors, "null_space"))
        self.context_prefixes = meta.get("context_prefixes")
        if self.rehearsal is not None:
            self.rehearsal.load_state(saved.part(tensors, "rehearsal"), meta.get("rehearsal", []))
        self.optimizer = self._new_optimizer()
        # load_state_dict moves the moments to the params' device
        saved.load_optimizer_state(
            self.optimizer, saved.part(tensors, "optimizer"), meta["optimizer"]
        )
