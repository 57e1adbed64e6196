"""AlphaEdit: MEMIT's multi-layer update, projected onto the null space of preserved knowledge
(Fang et al., ICLR 2025).

For a batch of edits, MEMIT (Meng et al. 2023) fits one target z_i per edit in the residual
stream after the last edited block (``locate.fit_delta``, δ added to that block's W_out output,
which the residual stream then carries), and spreads the change over the edited layers
l = 1..L, from the lowest up. At layer l, with K (in, n) the keys of the batch (the W_out input
at the last subject token, averaged over the contexts) and R (out, n) = (Z − H_L) / (L − l + 1)
the residual still missing, divided among the layers left:

    AlphaEdit (Eq. 13):   ΔW = R Kᵀ P (K_p K_pᵀ P + K Kᵀ P + α I)⁻¹

P (in, in) projects onto the null space of the preserved keys K₀: P = Û Ûᵀ over the eigenvectors
of K₀K₀ᵀ (here C = E[k kᵀ] of ROME's cached statistics) whose eigenvalues are below
``nullspace_threshold``, so ΔW k₀ ≈ 0 and the preserved outputs do not move. K_p K_pᵀ (``cache_c``)
sums the keys of every earlier batch, recomputed on the model after its update: the new update
is asked not to disturb them either. The reference solves the transposed system
(P(K Kᵀ + K_p K_pᵀ) + α I) ΔWᵀ = P K Rᵀ, which this code does too, in float64.

``batch_size`` is AlphaEdit's own batch (its paper: 100); None edits each stream batch at once.
With a batch size the edits wait in a buffer, which :meth:`flush` applies at the stream's end.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from baselines._common import block_of
from baselines.locate import fit_delta, subject_rows
from baselines.one_layer import fc_layer, weight_out_in
from baselines.rome_stats import cached_second_moments
from elder.editor import Editor, EditRecord, Encoded, check_subjects
from elder.models import LoadedModel
from elder.prefixes import generate_prefixes


class _Stop(Exception):
    pass


@dataclass
class AlphaEditConfig:
    """Hyperparameters of AlphaEdit; defaults are the reference's (hparams/AlphaEdit)."""

    modules: list[str]  # W_out of consecutive blocks, lowest first; z is fitted after the last
    batch_size: int | None = None  # edits per update (None: each stream batch)
    nullspace_threshold: float = 2e-2  # eigenvalues of C below this span the null space
    L2: float = 10.0  # α, the ridge term
    # z = h + δ: Adam on δ, loss = NLL(target) + kl_factor·KL("S is a") + weight decay.
    v_lr: float = 0.5
    v_num_grad_steps: int = 20
    v_weight_decay: float = 0.5
    kl_factor: float = 0.0625
    clamp_norm_factor: float = 0.75  # ‖δ‖ ≤ 0.75 ‖h‖
    stop_loss: float = 5e-2
    fast_path: bool = True  # run only the tokens that see δ at each step (same z up to rounding)
    context_prefixes: list[str] | None = None  # None: generated once by the unedited model
    prefix_lengths: list[list[int]] = field(default_factory=lambda: [[10, 5]])  # MEMIT's
    prefix_seed: int = 0
    mom2_corpus: str = "tasks/test-ClosedDomainQA.jsonl"  # as ROME (rome_stats)
    mom2_text_field: str = "passage"
    mom2_n_samples: int | None = None
    stats_dir: str = "results/cache/rome"

    def __post_init__(self) -> None:
        if not self.modules:
            raise ValueError("AlphaEdit: modules must name at least one layer")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("AlphaEdit: batch_size must be >= 1 (or null)")
        if self.v_num_grad_steps < 1 or self.clamp_norm_factor <= 0 or self.L2 < 0:
            raise ValueError(
                "AlphaEdit: need v_num_grad_steps >= 1, clamp_norm_factor > 0, L2 >= 0"
            )
        if self.nullspace_threshold <= 0:
            raise ValueError("AlphaEdit: nullspace_threshold must be > 0")


class AlphaEdit(Editor):
    """Null-space-projected MEMIT updates of ``modules``' weights, batch after batch."""

    name = "alphaedit"
    config_class = AlphaEditConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.layers = [fc_layer(model, m) for m in cfg.modules]
        blocks = [block_of(model, m) for m in cfg.modules]
        if blocks != sorted(set(blocks)):
            raise ValueError(
                f"AlphaEdit: modules must sit in distinct blocks, lowest first: {blocks}"
            )
        self.z_block = blocks[-1]  # z lives in the residual stream after this block
        self.context_prefixes = None if cfg.context_prefixes is None else list(cfg.context_prefixes)
        self.W0 = [weight_out_in(layer).detach().clone() for layer in self.layers]
        d_in = self.W0[0].shape[1]
        # K_p K_pᵀ of every edit so far, per layer (L, in, in)
        self.cache_c = torch.zeros(len(self.layers), d_in, d_in, device=model.device)
        self._P: torch.Tensor | None = None
        self.pending: list[EditRecord] = []
        self.n_edits = 0

    def extra_params(self) -> int:
        return sum(layer.weight.numel() for layer in self.layers)  # every weight may change

    def check_stream(self, records: list[EditRecord]) -> None:
        check_subjects(self.name, records)

    # -- the null space ----------------------------------------------------------------------

    def projection(self) -> torch.Tensor:
        """P (L, in, in): Û Ûᵀ over C's eigenvectors with eigenvalue < threshold.

        C belongs to the unedited model: computed on first use (before any update) and kept.
        """
        if self._P is None:
            cfg = self.config
            mom2s = cached_second_moments(
                self.model, cfg.modules, cfg.mom2_corpus, cfg.mom2_text_field,
                cfg.mom2_n_samples, cfg.stats_dir,
            )  # fmt: skip
            projections = []
            for c in mom2s:
                eigenvalues, U = torch.linalg.eigh(c.double())  # C is symmetric PSD
                U_null = U[:, eigenvalues < cfg.nullspace_threshold]  # (in, n_null)
                projections.append(U_null @ U_null.T)
            self._P = torch.stack(projections).float()  # kept as the reference keeps it
        return self._P

    def null_dims(self) -> list[int]:
        """The dimension of each layer's null space (the rank of its P)."""
        return [round(torch.trace(p).item()) for p in self.projection()]

    # -- contexts, keys and targets ----------------------------------------------------------

    def contexts(self) -> list[list[str]]:
        """MEMIT's context types: the bare prompt, then the sampled prefixes + '. '."""
        if self.context_prefixes is None:  # once, by the unedited model
            cfg = self.config
            self.context_prefixes = generate_prefixes(
                self.model, cfg.prefix_lengths, cfg.prefix_seed
            )
        return (
            [[""], [p + ". " for p in self.context_prefixes]] if self.context_prefixes else [[""]]
        )

    def _rows(self, record: EditRecord) -> tuple[Encoded, torch.Tensor]:
        return subject_rows(self.model, record, [c for kind in self.contexts() for c in kind])

    @torch.no_grad()
    def keys_and_hidden(
        self, layer: int, rows: list[tuple[Encoded, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K (in, n): layer ``layer``'s W_out input at the last subject token, the mean over
        each context type averaged (the reference's weighting: the bare prompt counts half);
        H (d, n): the residual stream after the z block at the bare prompt's subject token."""
        captured: dict[str, torch.Tensor] = {}

        def grab_key(mod, args):
            captured["k"] = args[0]

        def grab_hidden(mod, args, out):
            captured["h"] = out[0] if isinstance(out, tuple) else out
            raise _Stop

        sizes = [len(kind) for kind in self.contexts()]
        handles = [
            self.layers[layer].register_forward_pre_hook(grab_key),
            self.model.block_list[self.z_block].register_forward_hook(grab_hidden),
        ]
        keys, hidden = [], []
        try:
            for enc, lookups in rows:
                with contextlib.suppress(_Stop):  # nothing above the z block is needed
                    self.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
                ctx = torch.arange(len(lookups) - 1, device=lookups.device)  # not the KL row
                k = captured["k"][ctx, lookups[:-1]].float()  # (contexts, in)
                keys.append(torch.stack([part.mean(0) for part in k.split(sizes)]).mean(0))
                hidden.append(captured["h"][0, lookups[0]].float())
        finally:
            for handle in handles:
                handle.remove()
        return torch.stack(keys, 1), torch.stack(hidden, 1)

    def compute_z(
        self, enc: Encoded, lookups: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """z = h + δ (d,): h the residual stream after the z block on the bare prompt, δ fitted
        on the z block's W_out output, which the residual carries unchanged to the same place."""
        _, h = self.keys_and_hidden(len(self.layers) - 1, [(enc, lookups)])
        h = h[:, 0]
        _, delta, info = fit_delta(
            self.model, self.layers[-1], self.z_block, enc, lookups, self.config, m=h
        )
        return h + delta, info

    # -- the method --------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, layer: int, K: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """ΔW (out, in) of Eq. 13 for keys K (in, n) and residuals R (out, n)."""
        P = self.projection()[layer].double()
        K, R = K.double(), R.double()
        A = P @ (K @ K.T + self.cache_c[layer].double())
        A += self.config.L2 * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        return torch.linalg.solve(A, P @ K @ R.T).T  # ΔWᵀ solves A ΔWᵀ = P K Rᵀ

    def apply(self, records: list[EditRecord]) -> dict[str, float]:
        """One AlphaEdit update of every layer for ``records``."""
        self.projection()  # C on the unedited model, before the first update
        rows = [self._rows(r) for r in records]
        zs, infos = zip(*(self.compute_z(enc, lookups) for enc, lookups in rows), strict=True)
        Z = torch.stack(zs, 1)  # (d, n)
        n_layers = len(self.layers)
        for i, layer in enumerate(self.layers):
            K, H = self.keys_and_hidden(i, rows)
            R = (Z - H) / (n_layers - i)  # the residual left, spread over the layers to go
            delta = self.update(i, K, R)
            weight_out_in(layer).add_(delta.to(layer.weight.dtype))
        for i in range(n_layers):  # the batch's keys on the edited model join K_p
            K, H = self.keys_and_hidden(i, rows)  # H: the same at every i, the edited model's
            self.cache_c[i] += K @ K.T
        self.n_edits += len(records)
        stats = {key: sum(info[key] for info in infos) / len(infos) for key in infos[0]}
        stats["null_dim"] = min(self.null_dims())  # the smallest layer's free directions
        stats["z_error"] = (Z - H).norm(dim=0).mean().item()  # what the layers did not reach
        return stats

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        if self.config.batch_size is None:
            return self.apply(batch)
        self.pending.extend(batch)
        stats: dict[str, float] = {}
        while len(self.pending) >= self.config.batch_size:
            chunk = self.pending[: self.config.batch_size]
            self.pending = self.pending[self.config.batch_size :]
            stats = self.apply(chunk)
        return stats

    def flush(self) -> dict[str, float]:
        """Apply the edits still waiting for a full ``batch_size``."""
        if not self.pending:
            return {}
        records, self.pending = self.pending, []
        return self.apply(records)

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The edited weights, K_p K_pᵀ, the contexts and the waiting edits (P is recomputed
        from the cached statistics)."""
        tensors = {
            f"{m}.weight": weight_out_in(layer).detach().cpu().contiguous()
            for m, layer in zip(self.config.modules, self.layers, strict=True)
        }
        tensors["cache_c"] = self.cache_c.cpu().contiguous()
        meta = {
            "method": self.name,
            "modules": list(self.config.modules),
            "n_edits": self.n_edits,
            "context_prefixes": self.context_prefixes,
            "pending": [asdict(r) for r in self.pending],
        }
        return tensors, meta

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("modules") != list(self.config.modules):
            raise ValueError(
                f"AlphaEdit state is for {meta.get('modules')}, not {list(self.config.modules)}"
            )
        self.projection()  # C belongs to the unedited model: compute it first
        for m, layer in zip(self.config.modules, self.layers, strict=True):
            weight_out_in(layer).copy_(tensors[f"{m}.weight"])
        self.cache_c.copy_(tensors["cache_c"])
        self.n_edits = int(meta["n_edits"])
        self.context_prefixes = meta.get("context_prefixes")
        self.pending = [EditRecord(**r) for r in meta.get("pending", [])]
