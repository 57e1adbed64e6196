"""The frozen-past fast path: live tokens see exactly what a full forward gives them."""

import pytest
import torch

from elder import trunk
from elder.encoding import encode


@pytest.mark.parametrize("live_from", [[0, 0], [3, 0], [4, 1]])
def test_live_tokens_get_the_full_forwards_final_states(tiny_model, live_from):
    enc = encode(tiny_model.tokenizer, ["Hello there my friend", "Hi"], ["Paris", "Rome x"])
    live_from = torch.tensor(live_from)
    full = tiny_model.hf(
        input_ids=enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True
    ).hidden_states[-1]  # (B, T, d)
    hidden = trunk.block_input(tiny_model, 1, enc)
    frozen = trunk.freeze_past(tiny_model, 1, hidden, enc, live_from)
    live = enc.attention_mask.bool() & (torch.arange(enc.labels.shape[1]) >= live_from[:, None])
    torch.testing.assert_close(trunk.live_hidden_from(tiny_model, 1, frozen), full[live])
    # A second pass starts from the same past: the first one's live keys were not kept.
    torch.testing.assert_close(trunk.live_hidden_from(tiny_model, 1, frozen), full[live])
