"""WilKE: ROME at the layer whose pattern matches the edit best, edit by edit (Hu et al., 2024).

Lifelong ROME piles every rank-one update onto one layer. WilKE chooses a layer per edit
among the lower blocks (``modules``): at each candidate l it computes ROME's update
ΔW_l = Λ_l (C_l⁻¹k*_l)ᵀ for the edit on the current model (k*, v* and C exactly as ROME,
``baselines.rome``), scores the layer by the update's relative size

    LA_l = ‖ΔW_l‖_F / ‖W_l‖_F                    (the pattern-matching degree, as the code has it)

and applies the update of the layer with the smallest LA: the layer whose keys already carry
the edit's pattern needs the least change. So successive edits spread over the layers.

The reference (ChenhuiHu/WilKE@2aa874b, ``wilke/wilke_main.py``) tries each candidate by
editing it, measuring and restoring it, then edits the chosen layer again; the trials here
compute ΔW_l without writing it, and the chosen one is applied. Its evaluation rolls each edit
back after scoring it; here edits stay, one after the other, as every method's do. ΔW_l is this
project's ROME update, the ROME paper's Eq. 2, which maps the averaged key k* to v*; the ROME
code WilKE builds on maps the bare prompt's key instead (Λ = δ / (uᵀk_bare)). The two differ by
W(k_bare − k*) in Λ and by the denominator, so ‖ΔW_l‖, and at times the chosen layer, can
differ from the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from baselines.locate import subject_rows
from baselines.one_layer import weight_out_in
from baselines.rome import ROME, ROMEOptions
from baselines.rome_stats import cached_second_moments
from elder.editor import Editor, EditRecord, check_subjects
from elder.models import LoadedModel


@dataclass(kw_only=True)
class WilKEConfig(ROMEOptions):
    """ROME's options at each candidate layer; defaults are the reference's GPT2-XL ones."""

    # W_out of the candidate blocks, the reference's range(scanning_ceiling): GPT2-XL 0..23
    modules: list[str]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.modules:
            raise ValueError("WilKE: modules must name at least one candidate layer")


class WilKE(Editor):
    """One ROME update per edit, at the candidate layer that needs the smallest change."""

    name = "wilke"
    config_class = WilKEConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        options = {f.name: getattr(self.config, f.name) for f in fields(ROMEOptions)}
        self.romes = [ROME(model, module=m, **options) for m in self.config.modules]
        self.chosen: list[int] = []  # the candidate index each edit went to, in stream order
        self.contexts: list[str] = []  # set by prepare(): one set for every candidate

    def extra_params(self) -> int:
        """The weights of the layers edited so far (each may change entirely)."""
        return sum(self.romes[i].layer.weight.numel() for i in set(self.chosen))

    def check_stream(self, records: list[EditRecord]) -> None:
        check_subjects(self.name, records)

    def prepare(self) -> None:
        """C of every candidate in one pass over the corpus, on the unedited model."""
        cfg = self.config
        if cfg.mom2_adjustment and self.romes[0]._c_inv is None:
            cached_second_moments(
                self.model, cfg.modules, cfg.mom2_corpus, cfg.mom2_text_field,
                cfg.mom2_n_samples, cfg.stats_dir,
            )  # fmt: skip
            for rome in self.romes:
                rome.inverse_covariance()
        contexts = self.romes[0].contexts()  # one set of prefixes for every candidate
        for rome in self.romes[1:]:
            rome.context_prefixes = self.romes[0].context_prefixes
        self.contexts = contexts

    def scan(self, record: EditRecord) -> tuple[int, list[tuple[torch.Tensor, dict[str, float]]]]:
        """ROME's ΔW_l (out, in) at every candidate for ``record``, and the argmin of LA_l."""
        enc, lookups = subject_rows(self.model, record, self.contexts)
        trials = []
        for rome in self.romes:
            k_star = rome.compute_k_star(enc, lookups)
            u = rome.compute_u(k_star)
            v_star, info = rome.compute_v(enc, lookups)
            delta_w = rome.update(k_star, u, v_star)
            info["la"] = (delta_w.norm() / weight_out_in(rome.layer).float().norm()).item()
            trials.append((delta_w, info))
        best = min(range(len(trials)), key=lambda i: trials[i][1]["la"])
        return best, trials

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        self.prepare()
        stats: dict[str, float] = {}
        for record in batch:
            best, trials = self.scan(record)
            delta_w, info = trials[best]
            layer = self.romes[best].layer
            with torch.no_grad():
                weight_out_in(layer).add_(delta_w.to(layer.weight.dtype))
            self.chosen.append(best)
            info["block"] = float(self.romes[best].start)
            for key, value in info.items():
                stats[key] = stats.get(key, 0.0) + value / len(batch)
        return stats

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The edited weights (out, in) of the layers chosen so far, and the choices."""
        tensors = {}
        for i in sorted(set(self.chosen)):
            rome = self.romes[i]
            tensors[f"{rome.module}.weight"] = weight_out_in(rome.layer).detach().cpu().contiguous()
        meta = {
            "method": self.name,
            "modules": list(self.config.modules),
            "chosen": list(self.chosen),
            "context_prefixes": self.romes[0].context_prefixes,
        }
        return tensors, meta

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("modules") != list(self.config.modules):
            raise ValueError(f"WilKE state is for {meta.get('modules')}, not {self.config.modules}")
        self.romes[0].context_prefixes = meta["context_prefixes"]
        self.prepare()  # C belongs to the unedited model: compute it before the weights change
        for rome in self.romes:
            key = f"{rome.module}.weight"
            if key in tensors:
                weight_out_in(rome.layer).copy_(tensors[key].to(rome.W0))
        self.chosen = [int(i) for i in meta["chosen"]]
