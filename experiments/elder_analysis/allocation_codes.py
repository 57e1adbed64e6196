"""The allocation codes behind the paper's Fig. 4, from a saved ELDER run.

    python -m experiments.elder_analysis.allocation_codes results/runs/<elder run with save=true>

Five edits of the run's stream and their rephrases (seeded choice) and twenty NQ task inputs
(the retention prompts) are routed by the edited model; each input's allocation code (the
top-k LoRAs of every MoLoRA layer, a 0/1 vector of L·N), its router scores, its Hamming
distance to the nearest stored edit code and whether ELDER defers it are written to
``results/figures/fig4_codes.json``. ``make tables`` draws the t-SNE from that file.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import torch

from elder import ELDER, Encoded, load
from elder.allocation import min_hamming, pack, topk_code
from elder.saved import run_config
from experiments.data import EditStream
from experiments.results import write_json
from experiments.retention import prompts as P
from experiments.retention.evaluator import sample
from experiments.retention.tasks import load_task
from experiments.runner import build

OUT = Path("results/figures/fig4_codes.json")


def require_routers(editor: ELDER) -> None:
    """Refuse an editor with ``route=memory``: the routing tools read routers it never uses."""
    if editor.config.route == "memory":
        raise ValueError(
            "this run has method.route=memory: it has no routers to report on; its edits route "
            "by the nearest stored query (the run's deferred_* columns say where it defers)"
        )


@torch.no_grad()
def router_scores(editor: ELDER, text: str) -> torch.Tensor:
    """Router scores (1, L, N) of one input; nothing above the query module is run."""
    model = editor.model
    ids = model.tokenizer(text, return_tensors="pt").input_ids[:, -model.max_length :]
    ids = ids.to(model.device)  # (1, T)
    last = ids.new_tensor([ids.shape[1] - 1])  # the query position
    enc = Encoded(ids, torch.ones_like(ids), torch.full_like(ids, -100), last)
    return editor.scores(editor.query(enc)).float().cpu()


def route(editor: ELDER, text: str) -> dict[str, Any]:
    """Allocation code, router scores and deferral of one input (routed as at inference)."""
    scores = router_scores(editor, text)  # (1, L, N)
    code = topk_code(scores, editor.config.k)  # (1, L·N) in {0, 1}
    distance = int(min_hamming(pack(code).cpu(), editor.codes)[0])
    return {
        "code": code.flatten().tolist(),
        "scores": [round(s, 5) for s in scores.flatten().tolist()],
        "hamming_to_nearest_edit": distance,
        "deferred": bool(editor.defers(torch.tensor(distance))),
    }


def codes(run_dir: Path, n_groups: int = 5, n_task: int = 20, seed: int = 0) -> dict[str, Any]:
    editor = load(run_dir)
    if not isinstance(editor, ELDER):
        raise ValueError(f"{run_dir} is a {editor.name} run; allocation codes are ELDER's")
    require_routers(editor)
    cfg = run_config(run_dir)
    stream: EditStream = build(cfg.data)
    chosen = random.Random(seed).sample(range(len(stream.records)), n_groups)
    points = []
    for g, i in enumerate(chosen, 1):
        r = stream.records[i]
        for kind, text in (("edit", r.prompt), ("rephrase", r.rephrase)):
            point = {"group": f"edit #{g}", "kind": kind, "text": text}
            points.append({**point, **route(editor, text)})
    nq = load_task("nq")
    rows = [nq[i] for i in sample(len(nq), n_task, seed)]
    for prompt in P.render("nq", rows):
        point = {"group": "task input (NQ)", "kind": "task", "text": prompt.text}
        points.append({**point, **route(editor, prompt.text)})
    return {"run_id": run_dir.name, "L": editor.config.L, "N": editor.config.N, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = codes(args.run_dir, seed=args.seed)
    write_json(args.out, result)
    deferred = [p["deferred"] for p in result["points"] if p["kind"] == "task"]
    print(f"{len(result['points'])} codes -> {args.out}; NQ inputs deferred: {sum(deferred)}/20")


if __name__ == "__main__":
    main()
