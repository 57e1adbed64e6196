"""ROME: rank-one model editing of one FFN output weight, edit after edit (Meng et al. 2022).

Section 3 of the paper, with W = W_out of one block (y = W k + b):

    k*  = mean over contexts of the input of W at the last subject token       (Eq. 3)
    v*  = m + δ,  δ = argmin NLL(target | prompts with δ added to the layer output at the
          last subject token) + kl_factor · KL(p(· | "S is a") ‖ p_0) + weight decay,
          ‖δ‖ ≤ clamp_norm_factor · ‖m‖                                        (Eq. 4)
    Ŵ   = W + Λ (C⁻¹k*)ᵀ,  Λ = (v* − W k* − b) / ((C⁻¹k*)ᵀ k*)                  (Eq. 2)

so the updated layer maps k* to v* exactly. C = E[k kᵀ] over a text corpus (``rome_stats``) or
the identity (``mom2_adjustment: false``). The contexts are the bare prompt and the prompt after
each of ~20 short prefixes that the unedited model generates once per stream.

Fitting δ costs 20 forward and backward passes over ~22 rows. In a causal model the tokens
before a row's last subject token never see δ, so with ``fast_path`` (the default) their keys
and values at the blocks from the edited one up are computed once, and each step runs only the
few tokens from the last subject token on (``trunk.freeze_past``): the same δ up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from baselines._common import block_of
from baselines.locate import fit_delta, subject_rows
from baselines.one_layer import fc_layer, weight_out_in
from baselines.rome_stats import cached_second_moment
from elder.editor import Editor, EditRecord, Encoded, check_subjects
from elder.models import LoadedModel
from elder.prefixes import generate_prefixes


class _Stop(Exception):
    pass


@dataclass(kw_only=True)
class ROMEOptions:
    """How ROME edits one layer; defaults are the reference's for GPT2-XL (WilKE's too)."""

    v_lr: float = 0.5  # Adam on δ
    v_num_grad_steps: int = 20
    v_weight_decay: float = 0.5  # weight of ‖δ‖ / ‖m‖²
    kl_factor: float = 0.0625  # weight of the KL term on "S is a"
    clamp_norm_factor: float = 4.0  # ‖δ‖ ≤ clamp_norm_factor · ‖m‖
    stop_loss: float = 5e-2  # stop fitting δ once the loss is below this
    context_prefixes: list[str] | None = None  # None: generated once by the unedited model
    prefix_lengths: list[list[int]] = field(default_factory=lambda: [[5, 10], [10, 10]])
    prefix_seed: int = 0  # (length, count) pairs above are sampled with this seed
    mom2_adjustment: bool = True  # C = E[k kᵀ] over mom2_corpus (false: C = I)
    mom2_corpus: str = "tasks/test-ClosedDomainQA.jsonl"  # JSON lines, a data path (elder.data)
    mom2_text_field: str = "passage"
    mom2_n_samples: int | None = None  # texts used (None: all)
    stats_dir: str = "results/cache/rome"
    fast_path: bool = True  # run only the tokens that see δ at each step (same δ up to rounding)

    def __post_init__(self) -> None:
        if self.v_num_grad_steps < 1 or self.clamp_norm_factor <= 0:
            raise ValueError("ROME: need v_num_grad_steps >= 1 and clamp_norm_factor > 0")


@dataclass(kw_only=True)
class ROMEConfig(ROMEOptions):
    """Hyperparameters of ROME: its options and the layer it edits."""

    module: str  # W_out of one block, e.g. "model.layers.5.mlp.down_proj"


class ROME(Editor):
    """Rank-one edits of ``module``'s weight, one record after the other."""

    name = "rome"
    config_class = ROMEConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.layer = fc_layer(model, cfg.module)
        self.start = block_of(model, cfg.module)  # δ enters inside this block: cache those below
        self.context_prefixes = None if cfg.context_prefixes is None else list(cfg.context_prefixes)
        self.mom2 = dict(
            corpus=cfg.mom2_corpus, text_field=cfg.mom2_text_field,
            n_samples=cfg.mom2_n_samples, stats_dir=cfg.stats_dir,
        )  # fmt: skip
        self._c_inv: torch.Tensor | None = None
        self.W0 = weight_out_in(self.layer).detach().clone()  # (out, in), the unedited weight
        self.n_edits = 0

    @property
    def module(self) -> str:
        """The edited layer's path (``config.module``)."""
        return self.config.module

    def extra_params(self) -> int:
        return self.layer.weight.numel()  # every weight of the layer may change

    # -- contexts ----------------------------------------------------------------------------

    def contexts(self) -> list[str]:
        """What precedes the prompt in each rewriting row: nothing, then each prefix + '. '."""
        if self.context_prefixes is None:  # once, by the unedited model
            cfg = self.config
            self.context_prefixes = generate_prefixes(
                self.model, cfg.prefix_lengths, cfg.prefix_seed
            )
        return [""] + [p + ". " for p in self.context_prefixes]

    def _rows(self, record: EditRecord) -> tuple[Encoded, torch.Tensor]:
        """Rewriting rows (each context + prompt) and a last KL row, with the subject lookups."""
        return subject_rows(self.model, record, self.contexts())

    # -- the method --------------------------------------------------------------------------

    @torch.no_grad()
    def compute_k_star(self, enc: Encoded, lookups: torch.Tensor) -> torch.Tensor:
        """k* (in,): the layer input at the last subject token, averaged over the contexts."""
        captured: dict[str, torch.Tensor] = {}

        def grab(mod, args):
            captured["k"] = args[0]
            raise _Stop

        handle = self.layer.register_forward_pre_hook(grab)
        try:
            self.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        except _Stop:
            pass
        finally:
            handle.remove()
        rows = torch.arange(len(lookups) - 1, device=lookups.device)  # not the KL row
        return captured["k"][rows, lookups[:-1]].float().mean(0)

    def inverse_covariance(self) -> torch.Tensor:
        """C⁻¹ (in, in) float64, computed once (on the unedited model) and kept."""
        if self._c_inv is None:
            mom2 = cached_second_moment(self.model, self.config.module, **self.mom2)
            self._c_inv = torch.linalg.inv(mom2.double())
        return self._c_inv

    def compute_u(self, k_star: torch.Tensor) -> torch.Tensor:
        """u = C⁻¹k*, normalised (the scale cancels in Eq. 2); C = I without mom2_adjustment."""
        u = k_star.double()
        if self.config.mom2_adjustment:
            u = self.inverse_covariance() @ u
        return (u / u.norm()).to(k_star.dtype)

    def compute_v(
        self, enc: Encoded, lookups: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """v* = m + δ (out,), δ fitted as in Eq. 4; m is the layer output on the bare prompt."""
        m, delta, info = fit_delta(self.model, self.layer, self.start, enc, lookups, self.config)
        return m + delta, info

    @torch.no_grad()
    def update(self, k_star: torch.Tensor, u: torch.Tensor, v_star: torch.Tensor) -> torch.Tensor:
        """ΔW = Λ uᵀ (out, in) with Λ = (v* − layer(k*)) / (uᵀk*): W + ΔW maps k* to v*."""
        current = self.layer(k_star[None].to(self.layer.weight.dtype))[0].float()  # W k* + b
        lam = (v_star - current) / (u @ k_star)  # (out,)
        return torch.outer(lam, u)

    @torch.no_grad()
    def apply_update(self, k_star: torch.Tensor, u: torch.Tensor, v_star: torch.Tensor) -> None:
        """Ŵ = W + ΔW (Eq. 2)."""
        delta_w = self.update(k_star, u, v_star)
        weight_out_in(self.layer).add_(delta_w.to(self.layer.weight.dtype))

    def check_stream(self, records: list[EditRecord]) -> None:
        check_subjects(self.name, records)

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        stats: dict[str, float] = {}
        for record in batch:  # one rank-one update after the other, on the edited model
            enc, lookups = self._rows(record)
            k_star = self.compute_k_star(enc, lookups)
            u = self.compute_u(k_star)
            v_star, info = self.compute_v(enc, lookups)
            self.apply_update(k_star, u, v_star)
            self.n_edits += 1
            for key, value in info.items():
                stats[key] = stats.get(key, 0.0) + value / len(batch)
        return stats

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The edited weight (out, in), and the contexts used to compute it.

        The weight itself, not W - W0: W0 + (W - W0) need not round back to W, and a resumed
        run must continue from the very weight it stopped at.
        """
        weight = weight_out_in(self.layer).detach().cpu().contiguous()
        meta = {
            "method": self.name,
            "module": self.config.module,
            "n_edits": self.n_edits,
            "context_prefixes": self.context_prefixes,
        }
        return {f"{self.config.module}.weight": weight}, meta

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        module = self.config.module
        if meta.get("module") != module:
            raise ValueError(f"ROME state is for '{meta.get('module')}', not '{module}'")
        if self.config.mom2_adjustment:
            self.inverse_covariance()  # C belongs to the unedited model: compute it first
        if f"{module}.weight" in tensors:
            weight = tensors[f"{module}.weight"].to(self.W0)
        else:  # saved before 2026-12-01: the summed updates W - W0
            weight = self.W0 + tensors[f"{module}.weight.delta"].to(self.W0)
        weight_out_in(self.layer).copy_(weight)
        self.n_edits = int(meta.get("n_edits", 0))
        self.context_prefixes = meta.get("context_prefixes")
