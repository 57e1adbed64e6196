"""Ask a saved edited model questions from the terminal, next to the unedited model.

    python -m experiments.tools.ask results/runs/<run_id> "Where did Watts Humphrey study?"

The run must have been made with ``save=true``. Greedy answers of the edited model (with what
the method reports, e.g. ELDER's deferral) and of the base model; when a question is one of
the run's edit, rephrase or locality prompts, its target is shown too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from elder import load, load_base
from elder.models import LoadedModel
from elder.saved import SAVED_DIR
from experiments.results import predictions_file, read_jsonl
from experiments.retention.generate import base_generate


def _ids(model: LoadedModel, question: str) -> tuple[torch.Tensor, torch.Tensor]:
    enc = model.tokenizer(question, return_tensors="pt")
    return enc.input_ids.to(model.device), enc.attention_mask.to(model.device)


def _text(model: LoadedModel, tokens: torch.Tensor) -> str:
    """The first line of a generated continuation."""
    text = model.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return text.splitlines()[0] if text else ""


def base_answer(model: LoadedModel, question: str, max_new_tokens: int) -> str:
    """Greedy answer of the unedited model."""
    out = base_generate(model)(*_ids(model, question), max_new_tokens)
    return _text(model, out.tokens[0])


def known_targets(run_dir: Path) -> dict[str, tuple[str, str]]:
    """prompt -> (split, target) over the run's evaluated prompts, if predictions were kept."""
    file = predictions_file(run_dir)
    if not file.is_file():
        return {}
    rows = read_jsonl(file)
    # locality_alt: a neighborhood prompt scored against the new target; its target is the truth
    return {r["prompt"]: (r["split"], r["target"]) for r in rows if r["split"] != "locality_alt"}


def main(argv: list[str] | None = None) -> int:
    """Print edited and unedited answers; 0 on success, 2 with one line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder made with save=true")
    parser.add_argument("questions", nargs="+")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--device", default=None, help="override the run's model.device")
    args = parser.parse_args(argv)
    try:
        if not (args.run_dir / SAVED_DIR).is_dir():  # before loading any model
            raise FileNotFoundError(f"{args.run_dir} has no saved edits: run it with save=true")
        model = load_base(args.run_dir, args.device)
        unedited = [base_answer(model, q, args.max_new_tokens) for q in args.questions]
        editor = load(args.run_dir, model=model)  # edits the same model in place
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    targets = known_targets(args.run_dir)
    for question, before in zip(args.questions, unedited, strict=True):
        input_ids, mask = _ids(model, question)
        out = editor.generate(input_ids, mask, args.max_new_tokens)
        info = ", ".join(f"{k}={bool(v[0])}" for k, v in out.info.items())
        print(f"Q: {question}")
        if question in targets:
            split, target = targets[question]
            print(f"   ({split} prompt of this run; target: {target})")
        how = f"{editor.name}: {info}" if info else editor.name
        print(f"   edited   ({how}): {_text(model, out.tokens[0])}")
        print(f"   unedited: {before or '(nothing: the model ends its answer at once)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
