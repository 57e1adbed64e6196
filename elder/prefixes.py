"""Short texts the unedited model writes, to put before an edit's prompt while it trains.

ROME and MEMIT fit each edit after such prefixes so that it holds in other contexts; WISE
and ELDER+ (``method.prefixes``) train with them for the same reason.
"""

from __future__ import annotations

import torch

from elder.models import LoadedModel

PREFIX_SEEDS = ("The", "Therefore", "Because", "I", "You")  # the references' seed words


@torch.no_grad()
def generate_prefixes(
    model: LoadedModel,
    lengths: list[list[int]],
    seed: int,
    words: tuple[str, ...] = PREFIX_SEEDS,
    sample: bool = True,
) -> list[str]:
    """Short texts the model continues from ``words``: ``lengths`` lists [new tokens, how
    many], the words taking turns. Sampled top-5 with ``seed`` (ROME, MEMIT), or greedy."""
    tok, hf = model.tokenizer, model.hf
    prefixes: list[str] = []
    cuda = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for length, count in lengths:
            for s, word in enumerate(words):
                n = len(range(s, count, len(words)))
                if n == 0:
                    continue
                ids = torch.tensor([tok(word).input_ids] * n, device=model.device)
                sampling = dict(do_sample=True, top_k=5, top_p=1.0, temperature=1.0)
                out = hf.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=length,
                    pad_token_id=tok.pad_token_id,
                    **(sampling if sample else dict(do_sample=False)),
                )
                prefixes += tok.batch_decode(out, skip_special_tokens=True)
    return prefixes
