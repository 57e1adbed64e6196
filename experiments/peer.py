"""The peer cross-check: EasyEdit's own GRACE, ROME, WISE and AlphaEdit beside ours, on the
same model, the same N zsRE edits and the same hyperparameters, both scored by this project's
evaluation on the final model after the whole stream.

    python -m experiments.peer --easyedit ~/EasyEdit --n-edits 50 --methods grace,rome,wise

``--easyedit`` is a checkout of https://github.com/zjunlp/EasyEdit (docs/usage.md, "The peer
cross-check"): its code is imported from there, never copied. Only the four methods' packages
are imported: EasyEdit's package ``__init__`` imports its multimodal stack, which the text
methods never use. Its functions are called directly, one stream batch after another, with the
hyperparameters of our config for the method (``HPARAMS``), C from the same cached statistics
as ours (ROME, AlphaEdit), and WISE's irrelevant prompts from our WISE. The report gives the
teacher-forced metrics of both sides (EasyEdit's token accuracy is our ``*_tok``), locality
both as our exact agreement with the unedited model and as EasyEdit's token agreement, the share
of probes where both sides predict the same tokens, and the s/edit of each side, measured one
after the other in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import platform
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from tqdm import tqdm

from elder.editor import Editor, EditRecord, Encoded, ForwardOutput
from elder.models import LoadedModel, get_module
from experiments import metrics as M
from experiments.configs import compose
from experiments.evaluation import Predictions, base_forward, eval_probes, evaluate
from experiments.results import machine
from experiments.runner import seed_everything

# What our config says, in EasyEdit's hyperparameter names (its yaml for LLaMA supplies the rest).
HPARAMS = {
    "grace": dict(n_iter="iterations", edit_lr="lr", eps="eps_init", replacement="replacement"),
    "rome": dict(
        v_num_grad_steps="v_num_grad_steps", v_lr="v_lr", v_weight_decay="v_weight_decay",
        clamp_norm_factor="clamp_norm_factor", kl_factor="kl_factor",
        mom2_adjustment="mom2_adjustment", context_template_length_params="prefix_lengths",
    ),
    "alphaedit": dict(
        v_num_grad_steps="v_num_grad_steps", v_lr="v_lr", v_weight_decay="v_weight_decay",
        clamp_norm_factor="clamp_norm_factor", kl_factor="kl_factor", L2="L2",
        nullspace_threshold="nullspace_threshold",
    ),
    "wise": dict(
        edit_lr="edit_lr", n_iter="n_iter", norm_constraint="norm_constraint",
        mask_ratio="mask_ratio", act_ratio="act_ratio", save_freq="save_freq",
        merge_freq="merge_freq", densities="merge_density", retrieve="retrieve",
    ),
}  # fmt: skip
YAML = {
    "grace": "hparams/GRACE/llama-7b.yaml",
    "rome": "hparams/ROME/llama-7b.yaml",
    "alphaedit": "hparams/AlphaEdit/llama3-8b.yaml",
    "wise": "hparams/WISE/llama-7b.yaml",
}
# Where ours and EasyEdit's can be set alike, they are: GRACE replaces at the last prompt
# token only (EasyEdit's yaml; our default replaces the prompt before it), WISE applies the
# activation function to the outputs as EasyEdit does.
OURS = {"grace": ["method.replacement=replace_last"], "wise": ["method.activation_on_output=true"]}
MODULES = {  # EasyEdit's module packages, and the names we call there
    "grace": ("grace.grace_main", "grace.grace_hparams", "GraceHyperParams"),
    "rome": ("rome.rome_main", "rome.rome_hparams", "ROMEHyperParams"),
    "alphaedit": (
        "alphaedit.AlphaEdit_main", "alphaedit.AlphaEdit_hparams", "AlphaEditHyperParams"
    ),
    "wise": ("wise.wise_main", "wise.wise_hparams", "WISEHyperParams"),
}  # fmt: skip


def import_easyedit(checkout: Path, method: str) -> tuple[types.ModuleType, Any]:
    """EasyEdit's module of ``method`` and its hyperparameter class, from a checkout."""
    root = checkout / "easyeditor"
    if not (root / "models" / method).is_dir():
        raise FileNotFoundError(f"{checkout} is not an EasyEdit checkout with {method}")
    for name, path in (("easyeditor", root), ("easyeditor.models", root / "models")):
        if name not in sys.modules:  # skip the package __init__s: they import every method
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    main, hp_module, hp_class = MODULES[method]
    module = importlib.import_module(f"easyeditor.models.{main}")
    params = getattr(importlib.import_module(f"easyeditor.models.{hp_module}"), hp_class)
    return module, params


def commit_of(checkout: Path) -> str:
    """The checkout's git commit, or 'unknown' for a tree without git."""
    try:
        out = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def bracketed(module: str) -> str:
    """EasyEdit's spelling of a layer's weight: model.layers.25.mlp.down_proj ->
    model.layers[25].mlp.down_proj.weight."""
    parts = module.split(".")
    index = next(i for i, p in enumerate(parts) if p.isdigit())
    return f"{'.'.join(parts[:index])}[{parts[index]}].{'.'.join(parts[index + 1 :])}.weight"


class EasyEditPeer(Editor):
    """EasyEdit's implementation of one method behind our editor interface (not registered:
    the peer command builds it)."""

    name = "easyedit"

    def __init__(
        self,
        model: LoadedModel,
        method: str,
        checkout: Path,
        ours: Editor,
        same_contexts: bool = False,
    ) -> None:
        self.model, self.method = model, method
        self.module, params = import_easyedit(checkout, method)
        hp = params.from_hparams(str(checkout / YAML[method]))
        for theirs, key in HPARAMS[method].items():
            value = getattr(ours.config, key)
            setattr(hp, theirs, list(value) if isinstance(value, list) else value)
        hp.device, hp.model_name = str(model.device), f"{model.name} (llama)"
        n_blocks = len(model.block_list)
        if method in ("rome", "alphaedit"):
            modules = [ours.config.module] if method == "rome" else list(ours.config.modules)
            hp.layers = [int(m.split(".")[2]) for m in modules]
            hp.v_loss_layer = n_blocks - 1
        else:
            hp.inner_params = [bracketed(ours.config.module)]
        if method == "wise":
            hp.alpha, hp.beta, hp.gamma = ours.config.alpha, ours.config.beta, ours.config.gamma
            hp.sequential_edit = True  # keep the adapter between calls (WISE.py:80)
        self.hp, self.ours = hp, ours
        self._share_statistics()
        if same_contexts:
            self._share_contexts()
        self.n_edits = 0

    def _share_statistics(self) -> None:
        """C of our cached statistics for EasyEdit's ROME and AlphaEdit; fresh globals."""
        if self.method == "rome":
            self.module.CONTEXT_TEMPLATES_CACHE = None
            if self.hp.mom2_adjustment:
                compute_u = importlib.import_module("easyeditor.models.rome.compute_u")
                c_inv = self.ours.inverse_covariance().float()
                compute_u.get_inv_cov = lambda *args, **kwargs: c_inv
        if self.method == "alphaedit":
            A = self.module
            covs = dict(zip(self.ours.config.modules, self._alphaedit_covariances(), strict=True))
            A.get_cov = lambda model, tok, layer_name, *args, **kwargs: covs[layer_name]
            A.CONTEXT_TEMPLATES_CACHE, A.cache_c_new = None, False
            projections = [
                A.get_project(self.hf, self.model.tokenizer, i, self.hp) for i in self.hp.layers
            ]
            A.P, A.P_loaded = torch.stack(projections), True
            self.hp.P_loc = __file__  # any existing file: EasyEdit then keeps the P it was given
        if self.method == "wise":
            importlib.import_module("easyeditor.models.wise.utils").CONTEXT_TEMPLATES_CACHE = None

    def _share_contexts(self) -> None:
        """Our side's context prefixes for EasyEdit's too (its templates hold '{}' for the
        prompt; braces in a prefix become spaces, as EasyEdit's own sampling does)."""

        def template(context: str) -> str:
            return context.replace("{", " ").replace("}", " ") + "{}"

        contexts = self.ours.contexts()
        if self.method == "rome":
            self.module.CONTEXT_TEMPLATES_CACHE = [template(c) for c in contexts]
        elif self.method == "alphaedit":
            self.module.CONTEXT_TEMPLATES_CACHE = [[template(c) for c in kind] for kind in contexts]
        elif self.method == "wise":
            utils = importlib.import_module("easyeditor.models.wise.utils")
            utils.CONTEXT_TEMPLATES_CACHE = [template(c) for c in contexts]

    def _alphaedit_covariances(self) -> list[torch.Tensor]:
        from baselines.rome_stats import cached_second_moments

        cfg = self.ours.config
        return [
            c.float().cpu()
            for c in cached_second_moments(
                self.model, cfg.modules, cfg.mom2_corpus, cfg.mom2_text_field,
                cfg.mom2_n_samples, cfg.stats_dir,
            )
        ]  # fmt: skip

    def extra_params(self) -> int:
        return self.ours.extra_params()

    def _request(self, record: EditRecord) -> dict[str, Any]:
        request = {"prompt": record.prompt, "subject": record.subject, "target_new": record.target}
        if self.method == "wise":  # the irrelevant prompt our WISE trains the same edit with
            prompt, answer = self.ours.irrelevant(self.n_edits)
            request["loc_prompt"] = f"{prompt} {answer}"
        return request

    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        apply = {
            "grace": "apply_grace_to_model", "rome": "apply_rome_to_model",
            "alphaedit": "apply_AlphaEdit_to_model", "wise": "apply_wise_to_model",
        }[self.method]  # fmt: skip
        tok = self.model.tokenizer
        side = tok.padding_side
        tok.padding_side = "left" if self.method in ("grace", "wise") else "right"  # as BaseEditor
        try:
            groups = [batch] if self.method == "alphaedit" else [[r] for r in batch]
            for group in groups:
                requests = []
                for record in group:
                    requests.append(self._request(record))
                    self.n_edits += 1
                with contextlib.redirect_stdout(io.StringIO()):  # EasyEdit prints every step
                    getattr(self.module, apply)(self.hf, tok, requests, self.hp)
        finally:
            tok.padding_side = side
        return {}

    @torch.no_grad()
    def forward(self, enc: Encoded) -> ForwardOutput:
        """Plain forwards (ROME, AlphaEdit edit weights); GRACE and WISE one row at a time, as
        EasyEdit scores them: GRACE looks its key up at ``key_id``, WISE routes per call."""
        if self.method in ("rome", "alphaedit"):
            return ForwardOutput(
                self.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
            )
        B, T = enc.input_ids.shape
        logits = None
        for row in range(B):
            n = int(enc.attention_mask[row].sum())
            if self.method == "grace":
                get_module(self.hf, self.ours.config.module).key_id = int(enc.prompt_last[row])
            out = self.hf(input_ids=enc.input_ids[row : row + 1, :n]).logits[0]  # (n, V)
            if logits is None:
                logits = out.new_zeros(B, T, out.shape[-1])
            logits[row, :n] = out
        return ForwardOutput(logits)


@dataclass
class Side:
    """One side of a method's comparison: its predictions and speed."""

    predictions: Predictions
    s_per_edit: float


def run_side(editor: Editor, stream, model: LoadedModel, batch_size: int, desc: str) -> Side:
    """Edit the whole stream, then predict every probe: one side's result."""
    start = time.perf_counter()
    for batch in tqdm(stream.batches(), desc=desc, unit="batch"):
        editor.edit(batch)
    editor.flush()
    seconds = (time.perf_counter() - start) / len(stream.records)
    return Side(evaluate(editor.forward, model, eval_probes(stream), batch_size), seconds)


def scores(side: Predictions, base: Predictions) -> dict[str, float]:
    """Teacher-forced metrics, with locality also as EasyEdit's token agreement."""
    pairs = zip(side["locality"], base["locality"], strict=True)
    loc_tok = M.mean(
        [M.mean([float(a == b) for a, b in zip(p.pred, q.pred, strict=True)]) for p, q in pairs]
    )
    return {
        "rel": M.mean([p.exact for p in side["edit"]]),
        "gen": M.mean([p.exact for p in side["rephrase"]]),
        "rel_tok": M.mean([p.token_acc for p in side["edit"]]),
        "gen_tok": M.mean([p.token_acc for p in side["rephrase"]]),
        "loc": M.mean(
            [
                float(p.pred == q.pred)
                for p, q in zip(side["locality"], base["locality"], strict=True)
            ]
        ),
        "loc_tok": loc_tok,
    }


def same_predictions(a: Predictions, b: Predictions) -> float:
    """The share of probes on which the two sides predict the same tokens."""
    splits = ("edit", "rephrase", "locality")
    same = [float(p.pred == q.pred) for s in splits for p, q in zip(a[s], b[s], strict=True)]
    return M.mean(same)


def compare(method: str, args, model: LoadedModel, base: Predictions) -> list[str]:
    """Both sides of one method on fresh copies of the model: the report's table rows."""
    cfg = compose(
        [
            f"model={args.model}",
            f"data.n_edits={args.n_edits}",
            f"method={method}",
            *OURS.get(method, []),
        ]
    )
    stream = instantiate(cfg.data)
    sides = {}
    for side in ("ours", "EasyEdit"):
        seed_everything(cfg.seed)
        edited = copy.deepcopy(model)
        # EasyEdit's side reads our editor's config, C and irrelevant prompts from a copy of its own
        ours = instantiate(cfg.method, _partial_=True)(
            model=edited if side == "ours" else copy.deepcopy(model)
        )
        ours.check_stream(stream.records)
        editor = (
            ours
            if side == "ours"
            else EasyEditPeer(edited, method, args.easyedit, ours, args.same_contexts)
        )
        sides[side] = run_side(editor, stream, edited, args.batch_size, f"{method} ({side})")
    agree = same_predictions(sides["ours"].predictions, sides["EasyEdit"].predictions)
    rows = []
    for side, result in sides.items():
        s = scores(result.predictions, base)
        rows.append(
            f"| {method} | {side} | {s['rel_tok']:.3f} | {s['gen_tok']:.3f} | {s['loc']:.3f} | "
            f"{s['loc_tok']:.3f} | {s['rel']:.3f} | {s['gen']:.3f} | {result.s_per_edit:.2f} | "
            f"{agree:.3f} | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{torch.get_num_threads()} threads |"
        )
    return rows


def kept_rows(out: Path, commit: str, methods: list[str]) -> dict[str, list[str]]:
    """An earlier report's rows of the methods this run leaves alone, by method; none if that
    report ran another EasyEdit commit (its rows would not be comparable)."""
    if not out.exists() or f"`{commit}`" not in out.read_text():
        return {}
    rows: dict[str, list[str]] = {}
    for line in out.read_text().splitlines():
        method = line.split("|")[1].strip() if line.startswith("| ") else ""
        if method in MODULES and method not in methods:
            rows.setdefault(method, []).append(line)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--easyedit", type=Path, required=True, help="an EasyEdit checkout")
    parser.add_argument("--methods", default="grace,rome,alphaedit,wise")
    parser.add_argument("--n-edits", type=int, default=50)
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--batch-size", type=int, default=16, help="evaluation batch size")
    parser.add_argument(
        "--same-contexts",
        action="store_true",
        help="give EasyEdit's ROME, AlphaEdit and WISE our side's context prefixes",
    )
    parser.add_argument("--out", default="results/peer")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(MODULES))
    if unknown:
        sys.exit(f"error: --methods: no peer for {unknown}; known: {sorted(MODULES)}")
    try:
        for method in methods:
            import_easyedit(args.easyedit, method)
    except (FileNotFoundError, ImportError) as err:
        sys.exit(f"error: EasyEdit: {err} (docs/usage.md, 'The peer cross-check')")

    base_cfg = compose([f"model={args.model}", f"data.n_edits={args.n_edits}"])
    model = instantiate(base_cfg.model)
    stream = instantiate(base_cfg.data)
    base = evaluate(base_forward(model), model, eval_probes(stream), args.batch_size)
    tag = "_same_contexts" if args.same_contexts else ""
    out = Path(args.out) / f"{args.model}_{args.n_edits}{tag}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = commit_of(args.easyedit)
    rows = kept_rows(out, commit, methods)
    head = [
        f"# Peer cross-check: ours and EasyEdit's on {args.n_edits} zsRE edits, {args.model}",
        "",
        f"- command (per method, on the row's date): `python -m experiments.peer --easyedit "
        f"<checkout> --n-edits {args.n_edits} --model {args.model} --methods <method>"
        f"{' --same-contexts' if args.same_contexts else ''}`",
        f"- EasyEdit commit: `{commit}`",
        f"- machine: {machine()} ({platform.processor() or platform.machine()})",
        "- both sides scored by this project's evaluation on the final model, teacher-forced; "
        "`loc` = all locality tokens as the unedited model's, `loc_tok` = EasyEdit's token "
        "agreement; `same` = share of probes where both sides predict the same tokens",
        "",
        "| method | side | rel_tok | gen_tok | loc | loc_tok | rel | gen | s/edit | same | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        rows[method] = compare(method, args, model, base)
        ordered = [r for m in MODULES if m in rows for r in rows[m]]
        out.write_text("\n".join(head + ordered) + "\n")  # kept after each method
        print(f"{method}: done -> {out}", flush=True)


if __name__ == "__main__":
    main()
