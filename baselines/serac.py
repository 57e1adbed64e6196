"""SERAC: a memory of edits, a scope classifier, a counterfactual model (Mitchell et al., 2022).

Edits are stored, not trained into the model. For an input x, the scope classifier scores each
stored edit e with the reference's embedding classifier (``cross_attend: false``, ``square``):

    s(x, e) = exp(−scale · ‖f(x) − f(e)‖²)

Where max_e s(x, e) > threshold (0.5), the counterfactual model answers x with the retrieved
edit as its context, "{prompt} {target}\\n" followed by x; everywhere else the base model
answers, its output untouched. Classifier and counterfactual model are trained once, before the
stream, on cases that no evaluated input holds, with the reference's losses (trainer.py):

    L_cls  = balanced BCE of log s: (rephrase, its edit) positive, (locality prompt, its edit)
             negative (``all_negatives``: every other pair of the batch too)
    L_cntr = NLL of the target of the rephrase, given its edit as context

Named differences from the reference (eric-mitchell/serac@c963a39: distilbert classifier and a
separate T5-small / GPT-2 counterfactual model, both fine-tuned whole on zsRE's training split):

- f is a trained linear map of the base model's own frozen hidden state at
  ``classifier_layer``, averaged over the input's prompt tokens (no distilbert here);
- the counterfactual model is the base model with LoRA adapters on ``lora_targets``, switched
  on only for in-scope inputs, so the base model's outputs stay bit-identical elsewhere;
- the training cases are CounterFact's outside the stream (``train_data``): edit prompt ->
  new target, its rephrase (in scope), its locality prompt (out of scope);
- the two are trained apart, for a fixed number of steps: their parameters are disjoint here,
  so the reference's 0.1·L_cntr + 1·L_cls would only scale the learning rates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from transformers import StoppingCriteria
from transformers.pytorch_utils import Conv1D

from baselines.outside import outside_records
from elder.editor import Editor, EditRecord, Encoded, ForwardOutput, GenerateOutput
from elder.encoding import encode, left_pad
from elder.models import LoadedModel


@dataclass
class SERACConfig:
    """Hyperparameters of SERAC; defaults are the reference's where it has them (config/alg/rep)."""

    lora_targets: list[str]  # module-name suffixes of the counterfactual model's adapters
    threshold: float = 0.5  # s > threshold: in scope
    scale: float = 1.0  # the reference's fixed `scale` buffer
    all_negatives: bool = False  # the reference's use_all_negatives
    classifier_layer: int = -1  # hidden_states index pooled for f (-1: the last)
    classifier_dim: int = 256  # f's output size
    classifier_init: float = 0.1  # f's initial weight: PyTorch's default times this, bias 0
    classifier_lr: float = 1e-3  # Adam on f (the reference: 1e-5 on a whole distilbert)
    classifier_steps: int = 5000
    lora_r: int = 8
    lora_alpha: float = 16.0
    counterfactual_lr: float = 1e-4  # Adam on the adapters (the reference: 1e-5, whole model)
    counterfactual_steps: int = 200
    batch_size: int = 10  # the reference's qa batch_size
    train_size: int = 1000  # training cases
    train_data: str = "counterfact/counterfact-train.json"  # flattened CounterFact
    # [edit prompt, target, rephrase, locality prompt] rows instead of train_data
    train_cases: list[list[str]] | None = None
    seed: int = 0  # f's initialization, the order of the training cases and batches

    def __post_init__(self) -> None:
        checks = [
            (0 < self.threshold < 1, "threshold must be in (0, 1)"),
            (self.scale > 0, "scale must be > 0"),
            (bool(self.lora_targets), "lora_targets must name at least one module"),
            (min(self.classifier_steps, self.counterfactual_steps) >= 0, "steps must be >= 0"),
            (min(self.batch_size, self.train_size, self.classifier_dim) >= 1, "sizes >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SERAC: {message}")


class SERAC(Editor):
    """Stored edits, an embedding scope classifier and a LoRA counterfactual model."""

    name = "serac"
    config_class = SERACConfig
    inference_options = frozenset({"threshold"})

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        super().__init__(model, **config)
        cfg = self.config
        cfg.lora_targets = list(cfg.lora_targets)
        layers = [m for n, m in model.hf.named_modules() if n.split(".")[-1] in cfg.lora_targets]
        if not layers:
            raise ValueError(f"SERAC: {model.name} has no module named {cfg.lora_targets}")
        hidden = model.hf.config.hidden_size
        n_states = model.hf.config.num_hidden_layers + 1
        if not -n_states <= cfg.classifier_layer < n_states:
            raise ValueError(f"SERAC: classifier_layer {cfg.classifier_layer} of {n_states}")
        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            target_modules=cfg.lora_targets,
            fan_in_fan_out=isinstance(layers[0], Conv1D),  # GPT-2 stores W as (in, out)
            bias="none",
        )
        inject_adapter_in_model(peft_config, model.hf)  # B = 0: the function is unchanged
        self.tuners = [m for m in model.hf.modules() if isinstance(m, BaseTunerLayer)]
        self.adapters = {n: p for n, p in model.hf.named_parameters() if ".lora_" in n}
        self._switch(False)
        ref = next(model.hf.parameters())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.f = nn.Linear(hidden, cfg.classifier_dim).to(ref.device)  # float32, as trained
        with torch.no_grad():  # distances start near the threshold's scale, not in the hundreds
            self.f.weight.mul_(cfg.classifier_init)
            self.f.bias.zero_()
        self.norm = {"mean": torch.zeros(hidden), "std": torch.ones(hidden)}  # of the features
        tok = model.tokenizer
        self.bos = tok("a").input_ids[0] if tok("a").input_ids[0] == tok.bos_token_id else None
        self.stream: list[EditRecord] = []
        self.memory: list[tuple[str, str]] = []  # the stored edits, (prompt, target)
        self.keys = torch.zeros(0, cfg.classifier_dim)  # (N, k) f of each stored edit
        self.trained = False

    # -- the two models ----------------------------------------------------------------------

    def _switch(self, on: bool) -> None:
        for layer in self.tuners:
            layer.enable_adapters(on)
        for p in self.adapters.values():
            p.requires_grad_(False)

    @contextmanager
    def counterfactual(self) -> Iterator[None]:
        """The counterfactual model: the base model with its adapters switched on."""
        self._switch(True)
        try:
            yield
        finally:
            self._switch(False)

    def features(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        last: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized mean hidden state (B, d) over each row's tokens 0..last, and the logits."""
        out = self.hf(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=position_ids,
            output_hidden_states=True,
        )
        h = out.hidden_states[self.config.classifier_layer].float()  # (B, T, d)
        columns = torch.arange(h.shape[1], device=h.device)[None]  # (1, T)
        keep = (mask.bool() & (columns <= last[:, None].to(h.device))).float()[..., None]
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        mean, std = self.norm["mean"].to(pooled), self.norm["std"].to(pooled)
        return (pooled - mean) / std, out.logits

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Normalized features (n, d) of prompts, in batches."""
        rows = []
        for i in range(0, len(texts), 64):
            enc = encode(self.model.tokenizer, texts[i : i + 64], ["x"] * len(texts[i : i + 64]))
            enc = enc.to(self.model.device)
            with torch.no_grad():
                rows.append(self.features(enc.input_ids, enc.attention_mask, enc.prompt_last)[0])
        return torch.cat(rows).cpu()

    def log_sims(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """log s (n, N) of features x (n, d) against stored keys (N, k)."""
        z = self.f(x.to(self.f.weight))  # (n, k)
        d = torch.cdist(z, keys.to(z), compute_mode="donot_use_mm_for_euclid_dist")  # exact
        return -self.config.scale * d.square()

    def with_context(
        self, edits: list[tuple[str, str]], ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[list[list[int]], list[int]]:
        """Each row's tokens after its edit's context; and where row position t lands (+offset)."""
        rows, offsets = [], []
        for (prompt, target), row, m in zip(edits, ids.tolist(), mask.tolist(), strict=True):
            tokens = [t for t, keep in zip(row, m, strict=True) if keep]
            drop = int(self.bos is not None and tokens[:1] == [self.bos])
            context = self.model.tokenizer(f"{prompt} {target}\n").input_ids
            rows.append(context + tokens[drop:])
            offsets.append(len(context) - drop)
        return rows, offsets

    # -- training before the stream ----------------------------------------------------------

    def check_stream(self, records: list[EditRecord]) -> None:
        self.stream = list(records)  # what the training cases must stay out of

    def cases(self) -> list[tuple[str, str, str, str]]:
        cfg = self.config
        if cfg.train_cases is not None:
            evaluated = {t for r in self.stream for t in (r.prompt, r.rephrase, r.loc_prompt)}
            rows = [tuple(c) for c in cfg.train_cases if not evaluated & {c[0], c[2], c[3]}]
        else:
            fields = ("prompt", "rephrase_prompt", "locality_prompt")
            rows = [
                (c["prompt"], c["target_new"], c["rephrase_prompt"], c["locality_prompt"])
                for c in outside_records(cfg.train_data, self.stream, cfg.seed, fields)
            ]
        rows = [r for r in rows if all(t.strip() for t in r)][: cfg.train_size]  # all 4 texts
        if len(rows) < 2:
            raise ValueError(f"SERAC: {len(rows)} training cases outside the stream; need >= 2")
        return rows

    def prepare(self) -> None:
        """Train the scope classifier and the counterfactual model once, before the first edit."""
        if self.trained:
            return
        cases = self.cases()
        self.train_classifier(cases)
        self.train_counterfactual(cases)
        self.trained = True

    def train_classifier(self, cases: list[tuple[str, str, str, str]]) -> None:
        cfg = self.config
        edits, reph, loc = (self.embed([c[i] for c in cases]) for i in (0, 2, 3))
        mean, std = edits.mean(0), edits.std(0).clamp(min=1e-6)  # from the edits' features
        self.norm = {"mean": mean, "std": std}
        edits, reph, loc = ((x - mean) / std for x in (edits, reph, loc))
        optimizer = torch.optim.Adam(self.f.parameters(), lr=cfg.classifier_lr)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.f.requires_grad_(True)
        for _ in tqdm(range(cfg.classifier_steps), desc="SERAC classifier", leave=False):
            batch = torch.randperm(len(cases), generator=generator)[: cfg.batch_size]
            keys = self.f(edits[batch].to(self.f.weight))
            pos = self.log_sims(reph[batch], keys).diagonal()
            neg = self.log_sims(loc[batch], keys)  # (b, b): locality prompt i vs edit j
            neg = neg.flatten() if cfg.all_negatives else neg.diagonal()
            loss = balanced_bce(pos, neg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.f.requires_grad_(False)

    def train_counterfactual(self, cases: list[tuple[str, str, str, str]]) -> None:
        cfg = self.config
        params = list(self.adapters.values())
        optimizer = torch.optim.Adam(params, lr=cfg.counterfactual_lr)
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        with self.counterfactual():
            for p in params:
                p.requires_grad_(True)
            for _ in tqdm(
                range(cfg.counterfactual_steps), desc="SERAC counterfactual", leave=False
            ):
                batch = torch.randperm(len(cases), generator=generator)[: cfg.batch_size].tolist()
                picked = [cases[i] for i in batch]
                enc = encode(self.model.tokenizer, [c[2] for c in picked], [c[1] for c in picked])
                enc = enc.to(self.model.device)
                logits = self.counterfactual_logits([(c[0], c[1]) for c in picked], enc)
                loss = F.cross_entropy(logits[enc.target_mask].float(), enc.target_ids)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            for p in params:
                p.requires_grad_(False)
                p.grad = None

    def counterfactual_logits(self, edits: list[tuple[str, str]], enc: Encoded) -> torch.Tensor:
        """Counterfactual-model logits (b, T, V) at each row's own positions, given its edit."""
        rows, offsets = self.with_context(edits, enc.input_ids, enc.attention_mask)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.model.tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        device = self.model.device
        logits = self.hf(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        T = enc.input_ids.shape[1]
        index = (torch.arange(T)[None] + torch.tensor(offsets)[:, None]).clamp(0, width - 1)
        picked = logits.gather(1, index.to(device)[..., None].expand(-1, -1, logits.shape[-1]))
        return picked  # (b, T, V): row position t <- context + t

    # -- the stream --------------------------------------------------------------------------

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        self.prepare()
        edits = [(r.prompt, r.target) for r in batch]
        with torch.no_grad():
            keys = self.f(self.embed([p for p, _ in edits]).to(self.f.weight)).float().cpu()
        self.memory += edits
        self.keys = torch.cat([self.keys, keys])
        return {"memory": float(len(self.memory))}

    def extra_params(self) -> int:
        return sum(p.numel() for p in self.f.parameters()) + sum(
            p.numel() for p in self.adapters.values()
        )

    def scope(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) in scope, and the best stored edit's index, of features x (B, d)."""
        if not self.memory:
            return torch.zeros(len(x), dtype=torch.bool), torch.zeros(len(x), dtype=torch.long)
        with torch.no_grad():
            best, index = self.log_sims(x, self.keys).max(-1)
        return (best.exp() > self.config.threshold).cpu(), index.cpu()

    @torch.no_grad()
    def forward(self, enc: Encoded) -> ForwardOutput:
        x, logits = self.features(enc.input_ids, enc.attention_mask, enc.prompt_last)
        in_scope, index = self.scope(x)
        rows = in_scope.nonzero()[:, 0].tolist()
        if rows:
            sub = Encoded(*(t[rows] for t in (enc.input_ids, enc.attention_mask, enc.labels,
                                               enc.prompt_last)))  # fmt: skip
            with self.counterfactual():
                new = self.counterfactual_logits([self.memory[index[i]] for i in rows], sub)
            logits = logits.clone()
            logits[rows] = new.to(logits)
        return ForwardOutput(logits, {"in_scope": in_scope.float()})

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        stop: StoppingCriteria | None = None,
    ) -> GenerateOutput:
        """The base model's continuation, but the counterfactual model's for in-scope rows."""
        last = torch.full((input_ids.shape[0],), input_ids.shape[1] - 1)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # as forward's, for GPT-2
        x, _ = self.features(input_ids, attention_mask, last.to(input_ids.device), positions)
        in_scope, index = self.scope(x)
        out = super().generate(input_ids, attention_mask, max_new_tokens, stop).tokens
        rows = in_scope.nonzero()[:, 0].tolist()
        if rows:
            edits = [self.memory[index[i]] for i in rows]
            seqs, _ = self.with_context(edits, input_ids[rows], attention_mask[rows])
            room = self.model.max_length - max_new_tokens  # the oldest tokens go first
            seqs = [s[-room:] for s in seqs]
            pad = self.model.tokenizer.pad_token_id
            ids, mask = left_pad(seqs, pad, width=input_ids.shape[1])  # never fewer columns
            extra = ids.shape[1] - input_ids.shape[1]  # the context's columns, hidden from `stop`
            shifted = None if stop is None else _Shifted(stop, extra)
            with self.counterfactual():
                new = (
                    super()
                    .generate(
                        ids.to(input_ids.device), mask.to(input_ids.device), max_new_tokens, shifted
                    )
                    .tokens
                )
            out = _pad_cols(out, new.shape[1], pad)
            new = _pad_cols(new, out.shape[1], pad)
            out[rows] = new
        return GenerateOutput(out, {"in_scope": in_scope.float()})

    # -- state -------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"adapter.{n}": p.detach().cpu().contiguous() for n, p in self.adapters.items()}
        tensors.update({f"f.{k}": v.detach().cpu() for k, v in self.f.state_dict().items()})
        tensors.update({f"norm.{k}": v.contiguous() for k, v in self.norm.items()})
        tensors["keys"] = self.keys.contiguous()
        return tensors, {"method": self.name, "trained": self.trained, "memory": self.memory}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        names = sorted(k[len("adapter.") :] for k in tensors if k.startswith("adapter."))
        if names != sorted(self.adapters):
            raise ValueError("SERAC state holds other adapters than this editor's lora_targets")
        for n, p in self.adapters.items():
            p.copy_(tensors[f"adapter.{n}"].to(p))
        self.f.load_state_dict({k: tensors[f"f.{k}"].to(self.f.weight) for k in ("weight", "bias")})
        self.norm = {k: tensors[f"norm.{k}"] for k in ("mean", "std")}
        self.keys = tensors["keys"]
        self.memory = [tuple(e) for e in meta["memory"]]
        self.trained = bool(meta["trained"])


def balanced_bce(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The reference's balanced BCE on log-similarities: mean −log s⁺ + mean −log(1 − s⁻)."""
    eps = torch.finfo(torch.float32).eps
    return -pos.mean() - (-torch.expm1(neg)).clamp(min=eps).log().mean()


class _Shifted(StoppingCriteria):
    """A stopping criterion that sees the rows without the first ``extra`` columns."""

    def __init__(self, inner: StoppingCriteria, extra: int) -> None:
        self.inner, self.extra = inner, extra

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.inner(input_ids[:, self.extra :], scores, **kwargs)


def _pad_cols(tokens: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    """(B, n) -> (B, max(n, width)), right-padded with ``pad``."""
    if tokens.shape[1] >= width:
        return tokens
    filler = tokens.new_full((tokens.shape[0], width - tokens.shape[1]), pad)
    return torch.cat([tokens, filler], dim=1)
