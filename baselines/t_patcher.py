"""T-Patcher: one patch neuron per mistake in the last FFN (Huang et al., ICLR 2023).

A patch is an extra FFN neuron, key k_p, bias b_p and value v_p, added to the FFN output:

    FFN'(x) = FFN(x) + act(x·k_p + b_p) · v_p      at every token position

Per edit the model gets wrong (teacher-forced, some target token not the argmax), one neuron
per wrong target position (the first ``max_neurons``) is trained with

    L = L_edit + alc · L_act + mlc · L_mem
    L_edit = label-smoothed NLL of the target
    L_act  = mean of the top act_top_k of exp(act_margin − a_e)            (the patch fires)
    L_mem  = mean top-k of exp(a_m − a_e + margin1) + mean top-k of exp(a_m − margin2)

where a_e = x·k_p + b_p at the neuron's own position of the edit and a_m the same on every
vector of the memory set: inputs of the FFN on data outside the stream (``baselines.outside``),
to which each edit's own vectors are added once it is patched, so that a later patch does not
fire on an earlier edit. Earlier patches are frozen. Initialization: k_p = x_e / ‖x_e‖² and
b_p = 0 (a_e starts at 1), v_p = randn ⊙ amplify with both factors trained. Adam with weight
decay, gradient clipping, ReduceLROnPlateau on the edit loss every ``check_every`` steps;
after step ``start_check`` each check stops once the edit is right and, with ``use_val``, the
validation memory's loss has stopped improving.

Defaults are the reference's for zsRE (ZeroYuHuang/Transformer-Patcher@93ff458, BART-base),
with its margins as its zsRE runs have them (0: the BART editor does not pass them on).
The memory and each edit's memory vectors are the FFN inputs at every token of prompt + answer
but the first (the reference: every decoder position of its BART but the first, its start
token; a LLaMA's BOS is the same in every case). Each patched edit's vectors join both the
memory and the validation memory, as in the reference. Named differences, for decoder-only
models, which the reference does not cover: one copy of the edit per step (the reference
repeats it 8 times under dropout, which our models run without); the memory set is CounterFact
cases outside the stream, ``memory_size`` for training and as many others for validation (the
reference: 40,000 training questions of its zsRE split and a validation memory from its own
split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from baselines._common import block_of, ffn_activation, mean_stats
from baselines.outside import outside_cases
from elder import trunk
from elder.editor import Editor, EditRecord, Encoded
from elder.encoding import encode
from elder.models import LoadedModel, get_module, set_module


@dataclass
class TPatcherConfig:
    """Hyperparameters of T-Patcher; defaults are the reference's (scripts/main.py, utils.py)."""

    module: str  # the FFN of the last block, e.g. "model.layers.29.mlp"
    lr: float = 1e-2  # Adam
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    max_steps: int = 2000  # max_edit_step
    check_every: int = 25  # check_val_every_n_epoch: validate, step the LR schedule
    start_check: int = 100  # start_val_epoch: no stop before this step
    lr_factor: float = 0.5  # ReduceLROnPlateau on the edit loss
    lr_patience: int = 1
    lr_threshold: float = 0.05
    use_val: bool = True  # once right, go on while the validation memory loss improves
    val_threshold: float = 0.001  # ... by more than this
    max_neurons: int = 5  # max_add_neuron_num: one neuron per wrong target token, at most
    alc: float = 1.0  # weight of L_act
    mlc: float = 10.0  # weight of L_mem (the reference's zsRE value; FEVER 5)
    act_margin: float = 0.0  # act_margin_val
    margin1: float = 0.0  # margin_val1 (the BERT editor's 3)
    margin2: float = 0.0  # margin_val2 (the BERT editor's −3)
    act_top_k: int = 5  # activate_loss top5_exp
    memory_top_k: int = 1000  # memory_loss top1000_exp+top1000_exp
    amplify: float = 10.0  # amplify_con: v_p = randn ⊙ a, a starts here
    label_smoothing: float = 0.1
    update_memory: bool = True  # add each patched edit's vectors to the memories
    # The patch's activation; None: the FFN's own (the reference's GELU, SmolLM2's and LLaMA's
    # SiLU, whose negative tail, down to −0.28, lets a patch add a little of v_p everywhere).
    activation: str | None = None
    memory_size: int = 10_000  # cases for the memory, and as many for the validation memory
    memory_data: str = "counterfact/counterfact-train.json"  # flattened CounterFact
    memory_prompts: list[list[str]] | None = None  # [prompt, answer] pairs instead
    memory_batch_size: int = 64
    seed: int = 0  # the value initialization and the memory's sample

    def __post_init__(self) -> None:
        checks = [
            (self.max_steps >= 1 and self.check_every >= 1, "max_steps, check_every must be >= 1"),
            (self.max_neurons >= 1, "max_neurons must be >= 1"),
            (self.memory_size >= 1, "memory_size must be >= 1"),
            (self.act_top_k >= 1 and self.memory_top_k >= 1, "top-k sizes must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"T-Patcher: {message}")


def top_k_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """The mean of the k largest entries of ``x`` (all of them if fewer)."""
    x = x.reshape(-1)
    return x.topk(min(k, x.numel())).values.mean()


def stalled(values: list[float], threshold: float, patience: int = 1) -> bool:
    """True once the best value (lower by more than ``threshold``) is ``patience`` checks old."""
    best = 0
    for i, value in enumerate(values):
        if value < values[best] - threshold:
            best = i
    return best < len(values) - patience


class TPatchLayer(nn.Module):
    """An FFN plus its patch neurons; ``trial`` holds the neurons being trained."""

    def __init__(self, base_layer: nn.Module, activation: nn.Module, d: int, ref: torch.Tensor):
        super().__init__()
        self.base_layer = base_layer
        self.activation = activation
        self.register_buffer("keys", ref.new_empty(0, d))  # (P, d) k_p of the frozen patches
        self.register_buffer("bias", ref.new_empty(0))  # (P,)
        self.register_buffer("values", ref.new_empty(0, d))  # (P, d) v_p
        self.trial: dict[str, torch.Tensor] | None = None  # k (n, d), b (n,), v_dir, amplify
        self.pre_activation: torch.Tensor | None = None  # (B, T, n): x·k + b of the trial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if len(self.keys):
            out = out + self.activation(x @ self.keys.T + self.bias) @ self.values
        if self.trial is not None:
            t = self.trial
            self.pre_activation = x @ t["k"].T + t["b"]
            out = out + self.activation(self.pre_activation) @ (t["v_dir"] * t["amplify"])
        return out


class TPatcher(Editor):
    """Patch neurons in one FFN, one group per wrong edit, earlier ones frozen."""

    name = "t_patcher"
    config_class = TPatcherConfig

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        super().__init__(model, **config)
        cfg = self.config
        self.start = block_of(model, cfg.module)
        ffn = get_module(model.hf, cfg.module)
        ref = next(ffn.parameters()).detach()
        activation = ffn_activation(model, cfg.activation)
        self.layer = TPatchLayer(ffn, activation, model.hf.config.hidden_size, ref)
        set_module(model.hf, cfg.module, self.layer)
        self.stream: list[EditRecord] = []
        self.edited: list[tuple[str, str]] = []  # patched edits, whose vectors join the memory
        self.memory: torch.Tensor | None = None  # (M, d) FFN inputs the patches must not fire on
        self.val_memory: torch.Tensor | None = None
        self.n_edits = 0

    def extra_params(self) -> int:
        return self.layer.keys.numel() + self.layer.bias.numel() + self.layer.values.numel()

    def check_stream(self, records: list[EditRecord]) -> None:
        self.stream = list(records)  # what the memory set must stay out of

    # -- the memory set ----------------------------------------------------------------------

    @torch.no_grad()
    def vectors(self, pairs: list[tuple[str, str]], desc: str | None = None) -> torch.Tensor:
        """The FFN's inputs (N, d) at every token of each prompt + answer but the first."""
        out = []
        size = self.config.memory_batch_size
        for i in tqdm(range(0, len(pairs), size), desc=desc, leave=False, disable=desc is None):
            chunk = pairs[i : i + size]
            enc = encode(
                self.model.tokenizer,
                [p for p, _ in chunk],
                [a for _, a in chunk],
                self.model.device,
            )
            x = trunk.module_input(self.model, self.layer, enc)  # (B, T, d)
            keep = enc.attention_mask.bool()  # (B, T), right-padded
            keep[:, 0] = False  # the first token (a LLaMA's BOS) is alike in every case
            out.append(x[keep].float())
        return torch.cat(out)

    def prepare(self) -> None:
        """Build the memory and validation memory once, with the vectors of patched edits."""
        if self.memory is not None:
            return
        cfg = self.config
        if cfg.memory_prompts is not None:
            pool = [tuple(p) for p in cfg.memory_prompts]
        else:
            pool = outside_cases(cfg.memory_data, self.stream, cfg.seed)
        train, val = pool[: cfg.memory_size], pool[cfg.memory_size : 2 * cfg.memory_size]
        self.memory = self.vectors(train, "T-Patcher memory")
        self.val_memory = self.vectors(val or train, "T-Patcher validation memory")
        if cfg.update_memory:  # one at a time, as each joined: the very same vectors
            edited = [self.vectors([e]) for e in self.edited]
            self.memory = torch.cat([self.memory, *edited])
            self.val_memory = torch.cat([self.val_memory, *edited])

    def memory_loss(
        self, memory: torch.Tensor, trial: dict[str, torch.Tensor], a_edit: torch.Tensor
    ) -> torch.Tensor:
        """L_mem: the memory's activations (M, n) below the edit's (n,) and below margin2."""
        cfg = self.config
        a_mem = memory @ trial["k"].float().T + trial["b"].float()  # (M, n)
        return top_k_mean(torch.exp(a_mem - a_edit + cfg.margin1), cfg.memory_top_k) + top_k_mean(
            torch.exp(a_mem - cfg.margin2), cfg.memory_top_k
        )

    # -- the method --------------------------------------------------------------------------

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        self.prepare()
        out = mean_stats([self.edit_one(record) for record in batch])  # losses: patched edits
        out["neurons_total"] = float(len(self.layer.keys))
        return out

    def edit_one(self, record: EditRecord) -> dict[str, float]:
        cfg, layer = self.config, self.layer
        enc = encode(self.model.tokenizer, [record.prompt], [record.target], self.model.device)
        hidden = trunk.block_input(self.model, self.start, enc)  # frozen below the FFN's block
        with torch.no_grad():
            logits = trunk.target_logits_from(self.model, self.start, hidden, enc)
        wrong = (logits.argmax(-1) != enc.target_ids).nonzero()[:, 0]  # (n_wrong,)
        self.n_edits += 1
        if len(wrong) == 0:  # the model already answers it: no patch
            return {"patched": 0.0, "neurons": 0.0, "steps": 0.0}
        positions = enc.target_mask[0].nonzero()[:, 0][wrong[: cfg.max_neurons]]  # (n,)
        trial = self.init_trial(trunk.module_input(self.model, layer, enc)[0, positions])
        steps, losses = self.train(trial, enc, hidden, positions)
        with torch.no_grad():  # freeze the patch
            layer.keys = torch.cat([layer.keys, trial["k"].detach()])
            layer.bias = torch.cat([layer.bias, trial["b"].detach()])
            layer.values = torch.cat([layer.values, (trial["v_dir"] * trial["amplify"]).detach()])
        self.edited.append((record.prompt, record.target))
        if cfg.update_memory:
            vectors = self.vectors(self.edited[-1:])
            self.memory = torch.cat([self.memory, vectors])
            self.val_memory = torch.cat([self.val_memory, vectors])
        return {"patched": 1.0, "neurons": float(len(positions)), "steps": float(steps), **losses}

    def init_trial(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """k = x/‖x‖², b = 0 (the patch's pre-activation starts at 1), v = randn ⊙ amplify."""
        n, d = x.shape
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.n_edits)
        v_dir = torch.randn(n, d, generator=gen).to(x)
        trial = {
            "k": x / x.norm(dim=-1, keepdim=True) ** 2,
            "b": x.new_zeros(n),
            "v_dir": v_dir,
            "amplify": torch.full_like(v_dir, self.config.amplify),
        }
        return {key: t.clone().requires_grad_(True) for key, t in trial.items()}

    def losses(
        self, trial: dict[str, torch.Tensor], enc: Encoded, hidden: torch.Tensor, positions
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edit loss, the pre-activations a_e (n,) and the logits at the target positions."""
        logits = trunk.target_logits_from(self.model, self.start, hidden, enc)
        edit_loss = F.cross_entropy(
            logits.float(), enc.target_ids, label_smoothing=self.config.label_smoothing
        )
        a_edit = self.layer.pre_activation[0, positions, torch.arange(len(positions))]  # (n,)
        return edit_loss, a_edit, logits

    def train(
        self, trial: dict[str, torch.Tensor], enc: Encoded, hidden: torch.Tensor, positions
    ) -> tuple[int, dict[str, float]]:
        cfg, layer = self.config, self.layer
        params = list(trial.values())
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience,
            threshold=cfg.lr_threshold,
        )  # fmt: skip
        val_losses: list[float] = []
        layer.trial = trial
        try:
            for step in range(1, cfg.max_steps + 1):
                edit_loss, a_edit, _ = self.losses(trial, enc, hidden, positions)
                act_loss = top_k_mean(torch.exp(cfg.act_margin - a_edit), cfg.act_top_k)
                mem_loss = self.memory_loss(self.memory, trial, a_edit)
                loss = edit_loss + cfg.alc * act_loss + cfg.mlc * mem_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                if step % cfg.check_every:
                    continue
                with torch.no_grad():  # the reference's validation, on the edit itself
                    val_loss, a_val, logits = self.losses(trial, enc, hidden, positions)
                    right = bool((logits.argmax(-1) == enc.target_ids).all())
                    if step > cfg.start_check and right:
                        if not cfg.use_val:
                            break
                        val_losses.append(self.memory_loss(self.val_memory, trial, a_val).item())
                        if stalled(val_losses, cfg.val_threshold):
                            break
                schedule.step(val_loss.item())
        finally:
            layer.trial, layer.pre_activation = None, None
        info = {
            "edit_loss": edit_loss.item(),
            "act_loss": act_loss.item(),
            "mem_loss": mem_loss.item(),
        }
        return step, info

    # -- saving ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        layer = self.layer
        tensors = {"keys": layer.keys, "bias": layer.bias, "values": layer.values}
        tensors = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}
        meta = {
            "method": self.name,
            "module": self.config.module,
            "n_edits": self.n_edits,
            "edited": [list(pair) for pair in self.edited],  # their vectors are in the memory
        }
        return tensors, meta

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("module") != self.config.module:
            raise ValueError(
                f"T-Patcher state is for '{meta.get('module')}', not '{self.config.module}'"
            )
        ref = self.layer.keys
        self.layer.keys = tensors["keys"].to(ref)
        self.layer.bias = tensors["bias"].to(ref)
        self.layer.values = tensors["values"].to(ref)
        self.n_edits = int(meta["n_edits"])
        self.edited = [(p, a) for p, a in meta["edited"]]
        self.memory = self.val_memory = None  # rebuilt, with the edited vectors, on next edit
