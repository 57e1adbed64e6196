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
run's ε defers. Written to ``<run>/routing.json`` and printed.
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
from elder.method import guided_loss
from elder.saved import SAVED_DIR, editor_class, run_config
from experiments.checkpoint import latest
from experiments.elder_analysis.allocation_codes import require_routers, router_scores
from experiments.results import write_json
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
    records = build(run_config(args.run_dir).data).records
    result = {
        "run_id": args.run_dir.name,
        "source": source,
        **report(editor, records[: args.n]),
    }
    write_json(args.run_dir / OUT_NAME, result)
    print(render(result))


if __name__ == "__main__":
    main()
