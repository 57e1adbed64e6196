"""Where a generated answer ends: after its text, not at a line break before it."""

import pytest
import torch
from transformers import StoppingCriteria

from experiments.retention.generate import StopAfterText
from experiments.runner import build
from tests.baselines.test_configs import FAST
from tests.conftest import compose_cfg, tiny


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def test_a_row_stops_at_a_newline_only_after_non_blank_text():
    tok = tiny("llama").tokenizer
    prompt = ids(tok, "Q: the capital of France? A:")
    criterion = StopAfterText(tok, "\n", len(prompt))
    steps = ["\n", "\n\n", "\n\nParis", "\n\nParis\n"]
    done = [criterion(torch.tensor([prompt + ids(tok, s)]), torch.zeros(1, 1)) for s in steps]
    assert [bool(d) for d in done] == [False, False, False, True]


def test_each_row_of_a_batch_stops_on_its_own():
    tok = tiny("llama").tokenizer
    rows = [ids(tok, "\n Paris\n"), ids(tok, "\n\n \n")]
    width = max(map(len, rows))
    pad = tok.pad_token_id
    batch = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # prompt width 0
    assert StopAfterText(tok, "\n", 0)(batch, torch.zeros(2, 1)).tolist() == [True, False]


class StopNow(StoppingCriteria):
    """Every row is done after its first new token."""

    def __call__(self, input_ids, scores, **kwargs):
        return torch.ones(input_ids.shape[0], dtype=torch.bool)


@pytest.mark.parametrize("method", ["elder", *FAST])
def test_every_method_hands_the_stopping_criterion_to_generate(method):
    model = tiny("llama")
    editor = build(compose_cfg(f"method={method}", "model=tiny_llama").method, model=model)
    prompt = model.tokenizer(["The capital of France is"], return_tensors="pt")
    args = (prompt.input_ids, prompt.attention_mask, 5)
    assert editor.generate(*args).tokens.shape[1] > 1
    assert editor.generate(*args, StopNow()).tokens.shape[1] == 1
