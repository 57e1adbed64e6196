"""Which query lets ELDER's ``route=memory`` find a rephrase's edit and nothing else.

    python -m experiments.elder_analysis.queries --n-edits 200 --blocks 6,10,14,19

For each candidate query (the residual stream entering a block, ``method.query_pool``: at the
last prompt token, averaged over the prompt, or ``subject``: a stored prompt's at its
subject's last token, any other text matched at its best prompt token; and the paper's query,
the FC input of the model's ``query_block`` at the last token), the first ``--n-edits`` edit
prompts are stored as ``route=memory`` stores them. Then, by cosine distance to the nearest
stored query:

- **own** / **target**: the rephrases whose nearest stored edit is their own edit, or one
  with their target (which is what generalization needs); **other, same subject**: another
  edit about the same subject (zsRE asks some questions more than once, each time with
  another target); **own, subject alone**: own, among the edits whose subject no other edit
  of the stream has;
- **radius**, calibrated on data that no evaluated input is part of, three ways:
  - ``cf 1%``: ``--calibration`` CounterFact cases outside the stream, their prompts
    stored; the largest radius at which at most 1% of their locality prompts (same
    relation, another subject) are in reach;
  - ``cf 95%``: the same CounterFact cases; the radius that reaches 95% of their
    rephrases;
  - ``zsre 95%``: the zsRE records after the first 1000 (outside every stream of up to 1000
    edits), their prompts stored; the radius that reaches 95% of their rephrases;
- at each radius: rephrases in reach and routed to their target, and locality prompts and
  retention-task inputs in reach (``--n-per-task`` per task).

A Markdown table goes to stdout and ``<out>/queries_<data>_<n>.md``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from baselines.outside import outside_records
from elder.config import POOLS
from elder.data import data_file
from elder.editor import EditRecord
from elder.encoding import last_mention, left_pad
from elder.memory import pool, similarity
from elder.models import LoadedModel, get_module
from experiments.configs import compose
from experiments.results import write_report
from experiments.retention.evaluator import RetentionEvaluator
from experiments.runner import build
from experiments.streams.files import read_json

CALIBRATION = "counterfact/counterfact-train.json"
HELD_OUT = ("zsre/zsre_mend_eval_portability_gpt4.json", 1000)  # file, first held-out record


@torch.no_grad()
def queries(
    model: LoadedModel,
    texts: list[str],
    blocks: list[int],
    fc_module: str,
    subjects: list[str] | None = None,
    batch: int = 16,
) -> Iterator[dict[str, torch.Tensor]]:
    """Candidate queries of ``texts``, batch by batch: name -> (b, d) float32, or for the
    ``subject`` candidates without ``subjects`` each text's token set (b, T, d)."""
    tok = model.tokenizer
    fc: dict[str, torch.Tensor] = {}
    handle = get_module(model.hf, fc_module).register_forward_pre_hook(
        lambda m, args: fc.__setitem__("v", args[0])
    )
    try:
        for i in tqdm(range(0, len(texts), batch), desc="queries", leave=False):
            chunk = texts[i : i + batch]
            ids, mask = left_pad([tok(t).input_ids for t in chunk], tok.pad_token_id)
            ids, mask = ids.to(model.device), mask.to(model.device)
            last = torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)
            positions = (mask.cumsum(1) - 1).clamp_min(0)  # left padding: count from each text
            hidden = model.hf(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                output_hidden_states=True,
            )
            subject_last = None
            if subjects is not None:  # left padding shifts each text by its padding
                pad = ids.shape[1] - mask.sum(1)
                subject_last = pad + torch.tensor(
                    [
                        last_mention(tok, t, s)
                        for t, s in zip(chunk, subjects[i : i + batch], strict=True)
                    ],
                    device=ids.device,
                )
            found = {"paper (fc input, last)": pool(fc["v"], mask, last, "last")}
            for b in blocks:  # hidden_states[b]: the residual stream entering block b
                h = hidden.hidden_states[b]
                for how in POOLS:
                    found[f"block {b}, {how}"] = pool(h, mask, last, how, subject_last)
            yield {name: q.float().cpu() for name, q in found.items()}
    finally:
        handle.remove()


def subjects_of(records: list[EditRecord]) -> tuple[torch.Tensor, torch.Tensor]:
    """Which edits share their subject with another edit of the stream (n,) bool, and the
    (n, n) bool matrix of pairs about one subject; an edit without a subject has its own."""
    subjects = [r.subject or f"#{i}" for i, r in enumerate(records)]
    counts = Counter(subjects)
    shared = torch.tensor([counts[s] > 1 for s in subjects])
    ids = {s: i for i, s in enumerate(counts)}
    codes = torch.tensor([ids[s] for s in subjects])  # (n,) one id per subject
    return shared, codes[:, None] == codes[None, :]


def nearest(q: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine distance (b,) of queries (b, d) or token sets (b, T, d) to the nearest of unit
    keys (M, d), and its index (b,)."""
    best, index = similarity(q, keys).max(-1)
    return 1 - best, index


def measure(
    overrides: list[str], blocks: list[int], calibration: int, n_per_task: int
) -> tuple[list[dict], dict]:
    """One row per candidate query (see the module doc), and what it was measured on."""
    cfg = compose(overrides)
    stream, model = build(cfg.data), build(cfg.model)
    records = stream.records
    fc_module = cfg.model.layers.elder.pattern.format(cfg.model.layers.elder.query_block)
    fields = ("prompt", "locality_prompt", "rephrase_prompt")
    outside = outside_records(CALIBRATION, records, 0, fields)[:calibration]
    evaluated = {t for r in records for t in (r.prompt, r.rephrase, r.loc_prompt)}
    path, first = HELD_OUT
    held_out = [
        r
        for r in read_json(data_file(path))[first:]
        if not evaluated & {r["src"], r["rephrase"], r["loc"]}
    ]
    retention = RetentionEvaluator(model, n_per_task=n_per_task, cache_dir=None)
    tasks = [p.text for prompts in retention.prompts.values() for p in prompts]

    def keys(texts: list[str], subjects: list[str]) -> dict[str, torch.Tensor]:
        """The stored queries of texts, unit length: name -> (n, d)."""
        found = list(queries(model, texts, blocks, fc_module, subjects))
        return {name: F.normalize(torch.cat([f[name] for f in found]), dim=-1) for name in found[0]}

    def near(texts: list[str], stored: dict[str, torch.Tensor]) -> dict[str, tuple]:
        """Each text's distance (n,) to its nearest stored query, and that one's index (n,)."""
        parts: dict[str, list] = {}
        for found in queries(model, texts, blocks, fc_module):
            for name, q in found.items():
                parts.setdefault(name, []).append(nearest(q, stored[name]))
        return {name: tuple(map(torch.cat, zip(*p, strict=True))) for name, p in parts.items()}

    edit = keys([r.prompt for r in records], [r.subject for r in records])
    rephrase, loc, task = (
        near(texts, edit)
        for texts in ([r.rephrase for r in records], [r.loc_prompt for r in records], tasks)
    )
    cal_key = keys([c["prompt"] for c in outside], [c["subject"] for c in outside])
    cal_neg, cal_rephrase = (near([c[f] for c in outside], cal_key) for f in fields[1:])
    if held_out:
        dev_key = keys([r["src"] for r in held_out], [r["subject"] for r in held_out])
        dev_rephrase = near([r["rephrase"] for r in held_out], dev_key)
    else:
        print(f"{path} has no record after the first {first}: no zsre calibration", flush=True)
    targets = [r.target for r in records]
    shared, same = subjects_of(records)
    alone = ~shared  # no other edit is about its subject
    rows = []
    for name in edit:
        d_rep, idx = rephrase[name]
        nearest_edit = idx.tolist()
        hit = torch.tensor([targets[j] == t for j, t in zip(nearest_edit, targets, strict=True)])
        own = idx == torch.arange(len(records))
        subject = ~own & same[torch.arange(len(records)), idx]
        d_loc, d_task = loc[name][0], task[name][0]
        radii = {
            "cf 1%": cal_neg[name][0].quantile(0.01).item(),
            "cf 95%": cal_rephrase[name][0].quantile(0.95).item(),
        }
        if held_out:  # a file of at most 1000 records (the tests' fixture) holds none
            radii["zsre 95%"] = dev_rephrase[name][0].quantile(0.95).item()
        for calibration_name, radius in radii.items():
            rows.append(
                {
                    "query": name,
                    "own": _share(own),
                    "target": _share(hit),
                    "other, same subject": _share(subject),
                    "own, subject alone": _share(own[alone]) if alone.any() else float("nan"),
                    "calibration": calibration_name,
                    "radius": radius,
                    "rephrase in reach, its target": _share((d_rep <= radius) & hit),
                    "locality in reach": _share(d_loc <= radius),
                    "tasks in reach": _share(d_task <= radius),
                }
            )
            print(rows[-1], flush=True)
    info = {
        "model": cfg.model.name,
        "calibration": len(outside),
        "held_out": len(held_out),
        "subject_shared": int((~alone).sum()),
        "tasks": len(tasks),
    }
    return rows, info


def _share(mask: torch.Tensor) -> float:
    return mask.float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="zsre")
    parser.add_argument("--n-edits", type=int, default=200)
    parser.add_argument("--blocks", default="6,10,14,19")
    parser.add_argument("--calibration", type=int, default=1000, help="outside CounterFact cases")
    parser.add_argument("--n-per-task", type=int, default=20)
    parser.add_argument("--out", default="results/elder_plus")
    args = parser.parse_args()

    t0 = time.perf_counter()
    blocks = [int(b) for b in args.blocks.split(",")]
    overrides = [f"data={args.data}", f"data.n_edits={args.n_edits}"]
    rows, info = measure(overrides, blocks, args.calibration, args.n_per_task)
    keys = list(rows[0])
    command = (
        f"python -m experiments.elder_analysis.queries --data {args.data} --n-edits "
        f"{args.n_edits} --blocks {args.blocks} --calibration {args.calibration} "
        f"--n-per-task {args.n_per_task}"
    )
    text = write_report(
        Path(args.out) / f"queries_{args.data}_{args.n_edits}.md",
        f"Queries for ELDER's route=memory, {args.n_edits} {args.data} edits stored",
        command,
        time.perf_counter() - t0,
        [
            f"model {info['model']}; calibration: {info['calibration']} CounterFact train "
            f"cases outside the stream, {info['held_out']} held-out zsRE records; "
            f"{info['tasks']} retention-task inputs; {info['subject_shared']} of the "
            f"{args.n_edits} edits share their subject with another edit of the stream"
        ],
        keys,
        [list(r.values()) for r in rows],
    )
    print(text)


if __name__ == "__main__":
    main()
