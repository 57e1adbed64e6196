"""How a finished ELDER run routes its own edits: does the guided loss take hold?

    python -m experiments.elder_analysis.routing results/runs/<elder run> [--checkpoint] [--n 200]

The run's edited model (its saved edits, or with ``--checkpoint`` its last checkpoint, for a
run made without ``save=true``) routes the first n edit prompts of its stream, their
rephrases and their locality prompts, one at a time as at inference. For the edit prompts:

- **codes**: how many distinct allocation codes they get, against how many distinct labels
  the stream has (the guided loss asks for one code per label);
- **drift**: how many still get the code that was stored when they were edited, and the mean
  Hamming distance to it (deferral compares an input with the *stored* codes);
- **preset**: how many were stored with their pre-assigned allocation, how many get it now in
  every layer, the share per layer, and the guided loss ``Σ_l Σ_{j ∈ preset} -log s_{l,j}``
  of the final routers (median);
- **usage**: per layer, the share of edit prompts that route to each LoRA.

For every kind of prompt, the Hamming distance to the nearest stored code and the share the
run's ε defers.

A ``route=memory`` run has no routers; its report says where each rephrase's nearest stored
query leads, and how the run scored it there (its ``predictions.jsonl.gz``):

- **own** / **same target**: the nearest stored edit is the rephrase's own, or one with its
  target; **in reach**: within ``radius`` (else deferred);
- **generalization** of the rephrases routed in reach to their own edit, to another edit, and
  of those deferred: how much of the missing generalization is routing and how much is the
  edit not transferring; and to another edit about the same subject (zsRE asks some questions
  more than once, with another target each time);
- **by subject**: own routing and generalization of the edits whose subject no other edit of
  the stream has, and of those whose subject recurs;
- **by position**: the generalization of the rephrases routed to their own edit, for each
  fifth of the stream (whether later edits, on fuller LoRAs, transfer less);
- **own by store size**: the same look-up with only the first m edits stored, for growing m.

Written to ``<run>/routing.json`` and printed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from elder import ELDER, load
from elder.allocation import hamming, min_hamming, pack, topk_code
from elder.editor import EditRecord
from elder.encoding import encode
from elder.memory import similarity
from elder.method import guided_loss
from elder.saved import SAVED_DIR, editor_class, run_config
from experiments.checkpoint import latest
from experiments.elder_analysis.allocation_codes import require_routers, router_scores
from experiments.elder_analysis.queries import subjects_of
from experiments.results import predictions_file, read_jsonl, write_json
from experiments.runner import build

KINDS = {"edit": "prompt", "rephrase": "rephrase", "locality": "loc_prompt"}
OUT_NAME = "routing.json"


def load_editor(run_dir: Path, checkpoint: bool) -> tuple[ELDER, str]:
    """The run's edited ELDER and where its state came from."""
    if not issubclass(editor_class(run_dir), ELDER):
        raise ValueError(f"{run_dir} is not an ELDER run; this report is about ELDER's routers")
    source, state_dir = f"saved edits ({SAVED_DIR}/)", None
    if not checkpoint and not (run_dir / SAVED_DIR).is_dir():
        raise FileNotFoundError(
            f"{run_dir} has no saved edits ({SAVED_DIR}/): pass --checkpoint to read its last "
            "checkpoint, or run it with save=true"
        )
    if checkpoint:
        found = latest(run_dir)
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint (checkpoint/latest.json)")
        state_dir, batches = found
        source = f"checkpoint {state_dir.name} ({batches} edit batches)"
    return load(run_dir, state_dir=state_dir), source


def report(editor: ELDER, records: list[EditRecord]) -> dict[str, Any]:
    """Routing of the first ``len(editor.codes)`` records of the stream (see the module doc)."""
    require_routers(editor)
    cfg = editor.config
    n = min(len(records), len(editor.codes))
    if n == 0:
        raise ValueError("the editor has no stored codes: it has edited nothing")
    records = records[:n]
    scores = {  # kind -> (n, L, N)
        kind: torch.cat(
            [router_scores(editor, getattr(r, field)) for r in tqdm(records, desc=kind)]
        )
        for kind, field in KINDS.items()
    }
    codes = {kind: topk_code(s, cfg.k) for kind, s in scores.items()}  # kind -> (n, L·N)
    code, s = codes["edit"], scores["edit"]
    preset = editor.allocations.batch([editor.label_of(r) for r in records])  # (n, L, k)
    preset_code = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, preset, True)  # (n, L, N)
    in_preset = (code.view_as(preset_code) == preset_code).all(-1)  # (n, L)
    to_stored = hamming(pack(code), editor.codes[:n])  # (n,): edit i against its own code
    stored_is_preset = hamming(pack(preset_code.flatten(1)), editor.codes[:n]) == 0  # (n,)
    guided = guided_loss(s, preset)  # (n,)
    nearest = {kind: min_hamming(pack(c), editor.codes) for kind, c in codes.items()}  # (n,)
    return {
        "n": n,
        "labels": len({editor.label_of(r) for r in records}),
        "eps": cfg.eps,
        "distinct_codes": len({tuple(c.tolist()) for c in code}),
        "distinct_stored_codes": len({tuple(c.tolist()) for c in editor.codes[:n]}),
        "same_as_stored": (to_stored == 0).float().mean().item(),
        "hamming_to_stored_mean": to_stored.float().mean().item(),
        "stored_preset_match": stored_is_preset.float().mean().item(),
        "preset_match": in_preset.all(-1).float().mean().item(),
        "preset_match_per_layer": in_preset.float().mean(0).tolist(),
        "guided_loss_median": guided.median().item(),
        "guided_loss_uniform": cfg.L * cfg.k * math.log(cfg.N),
        "expert_usage": code.view_as(preset_code).float().mean(0).tolist(),  # (L, N)
        "deferral": {
            kind: {
                "deferred": editor.defers(d).float().mean().item(),
                "hamming_to_nearest": {
                    "min": d.min().item(),
                    "median": d.median().item(),
                    "max": d.max().item(),
                },
            }
            for kind, d in nearest.items()
        },
    }


@torch.no_grad()
def memory_similarity(
    editor: ELDER, prompts: list[str], targets: list[str], batch: int = 16
) -> torch.Tensor:
    """Cosine similarity (n, M) of the routing queries of prompts, encoded as the
    teacher-forced evaluation does, to the M stored ones."""
    tok, out = editor.model.tokenizer, []
    for i in tqdm(range(0, len(prompts), batch), desc="queries", leave=False):
        enc = encode(tok, prompts[i : i + batch], targets[i : i + batch], editor.model.device)
        out.append(similarity(editor.query(enc), editor.memory.keys))
    return torch.cat(out)


def memory_report(
    editor: ELDER, records: list[EditRecord], rephrase_exact: list[float]
) -> dict[str, Any]:
    """Where the rephrases of the first ``len(editor.memory)`` edits are routed by the nearest
    stored query, and their exact-match generalization there (see the module doc)."""
    memory, radius = editor.memory, editor.config.radius
    n = min(len(records), len(memory), len(rephrase_exact))
    if n == 0:
        raise ValueError("the editor has no stored queries: it has edited nothing")
    records = records[:n]
    targets = [r.target for r in records]
    sim = memory_similarity(editor, [r.rephrase for r in records], targets)  # (n, M)
    best, nearest = sim.max(-1)  # (n,), (n,)
    distance = 1 - best
    own = nearest == torch.arange(n)
    same_target = torch.tensor(
        [targets[j] == t for j, t in zip(nearest.tolist(), targets, strict=True)]
    )
    shared, same = subjects_of(records)  # (n,), (n, n)
    same_subject = ~own & same[torch.arange(n), nearest]
    reach = distance <= radius
    exact = torch.tensor(rephrase_exact[:n], dtype=torch.float)

    def gen(mask: torch.Tensor) -> dict[str, float]:
        return {"share": mask.float().mean().item(), "generalization": exact[mask].mean().item()}

    def by_subject(mask: torch.Tensor) -> dict[str, float]:
        return {**gen(mask), "own": own[mask].float().mean().item()}

    by_size = {}
    for m in sorted({m for m in (50, 100, 200, 500, 1000, 2000, 4000) if m < n} | {n}):
        best_m, index = sim[:m, :m].max(-1)  # the first m edits stored, (m,)
        own_m = index == torch.arange(m)
        by_size[m] = {
            "own": own_m.float().mean().item(),
            "own_in_reach": (own_m & (1 - best_m <= radius)).float().mean().item(),
        }
    fifths = torch.arange(n) * 5 // n  # (n,) which fifth of the stream each edit is in
    by_position = {
        f"{part * n // 5}-{(part + 1) * n // 5}": gen(own & reach & (fifths == part))
        for part in range(5)
    }
    return {
        "n": n,
        "radius": radius,
        "own": own.float().mean().item(),
        "same_target": same_target.float().mean().item(),
        "in_reach": reach.float().mean().item(),
        "generalization": exact.mean().item(),
        "routed": {
            "own, in reach": gen(own & reach),
            "other, in reach": gen(~own & reach),
            "other with its target, in reach": gen(~own & same_target & reach),
            "other about its subject, in reach": gen(same_subject & reach),
            "deferred": gen(~reach),
        },
        "distance": {
            "own": distance[own].median().item() if own.any() else None,
            "other": distance[~own].median().item() if (~own).any() else None,
        },
        "own_by_store_size": by_size,
        "subject": {"its own": by_subject(~shared), "shared": by_subject(shared)},
        "own_by_position": by_position,
    }


def render_memory(result: dict[str, Any]) -> str:
    """The ``route=memory`` report as text."""
    r = result
    lines = [
        f"{r['run_id']}: {r['n']} edits, route=memory, radius {r['radius']}, {r['source']}",
        f"rephrases: nearest stored edit is their own {r['own']:.1%}, has their target "
        f"{r['same_target']:.1%}; in reach {r['in_reach']:.1%}; "
        f"generalization {r['generalization']:.3f}",
        f"median distance to the nearest stored query: own {r['distance']['own']:.4f}, "
        f"other {r['distance']['other']:.4f}",
        "rephrases routed to                 share   generalization",
        *(
            f"  {k:<33} {v['share']:6.1%}   {v['generalization']:.3f}"
            for k, v in r["routed"].items()
        ),
        "rephrases by subject               share   own     generalization",
        *(
            f"  {k + ' (in the stream)':<33} {v['share']:6.1%}  {v['own']:6.1%}  "
            f"{v['generalization']:.3f}"
            for k, v in r["subject"].items()
        ),
        "routed to their own edit, by position in the stream (share of all rephrases):",
        *(
            f"  edits {k:<11} {v['share']:6.1%}   generalization {v['generalization']:.3f}"
            for k, v in r["own_by_position"].items()
        ),
        "own by store size (first m edits stored, their rephrases looked up):",
        *(
            f"  m={m:<5} own {v['own']:.1%}   own and in reach {v['own_in_reach']:.1%}"
            for m, v in r["own_by_store_size"].items()
        ),
    ]
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The report as text."""
    r = result
    lines = [
        f"{r['run_id']}: {r['n']} edits ({r['labels']} labels), {r['source']}",
        f"distinct codes of the edit prompts: {r['distinct_codes']} now, "
        f"{r['distinct_stored_codes']} stored at edit time",
        f"same code as stored at its edit: {r['same_as_stored']:.1%} "
        f"(mean Hamming distance {r['hamming_to_stored_mean']:.2f})",
        f"stored code = preset allocation: {r['stored_preset_match']:.1%}",
        f"preset allocation in every layer now: {r['preset_match']:.1%}; per layer: "
        + " ".join(f"{s:.2f}" for s in r["preset_match_per_layer"]),
        f"guided loss, median over edits: {r['guided_loss_median']:.1f} "
        f"(uniform router: {r['guided_loss_uniform']:.1f})",
        "expert usage (share of edit prompts routed to each LoRA), one line per layer:",
        *("  " + " ".join(f"{u:.2f}" for u in layer) for layer in r["expert_usage"]),
        f"deferral at ε={r['eps']}  (Hamming distance to the nearest stored code: min/median/max)",
    ]
    for kind, d in r["deferral"].items():
        h = d["hamming_to_nearest"]
        lines.append(
            f"  {kind:<9} deferred {d['deferred']:.1%}   {h['min']} / {h['median']} / {h['max']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", action="store_true", help="read the last checkpoint")
    parser.add_argument("--n", type=int, default=None, help="first n edits (default: all)")
    args = parser.parse_args()
    editor, source = load_editor(args.run_dir, args.checkpoint)
    records = build(run_config(args.run_dir).data).records[: args.n]
    head = {"run_id": args.run_dir.name, "source": source}
    if editor.memory is not None:
        rows = read_jsonl(predictions_file(args.run_dir))
        exact = [row["exact"] for row in rows if row["split"] == "rephrase"]
        result = {**head, **memory_report(editor, records, exact)}
        text = render_memory(result)
    else:
        result = {**head, **report(editor, records)}
        text = render(result)
    write_json(args.run_dir / OUT_NAME, result)
    print(text)


if __name__ == "__main__":
    main()
