"""The query tool measures the queries ELDER's route=memory would store and look up."""

import pytest
import torch

from elder.editor import EditRecord
from elder.encoding import encode
from experiments.elder_analysis.queries import measure, queries
from tests.conftest import tiny
from tests.elder.test_elder import _elder


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # gpt2: absolute positions, left padding
def test_a_candidate_query_is_the_one_route_memory_computes(arch):
    model = tiny(arch)  # deterministic: every tiny(arch) has the same weights
    texts, subjects = ["The capital of France is", "Rome is in the country of"], ["France", "Rome"]
    edits = [EditRecord(t, "x", t, t, "y", subject=s) for t, s in zip(texts, subjects, strict=True)]
    fc = model.layers["elder"]["pattern"].format(1)
    (found,) = queries(model, texts, [1], fc, subjects)  # one batch
    for how in ("last", "mean", "subject"):
        editor = _elder(tiny(arch), route="memory", query="residual", query_block=1, query_pool=how)
        alone = editor.query(encode(model.tokenizer, texts, ["Paris", "Italy"]), edits)
        torch.testing.assert_close(found[f"block 1, {how}"], alone, rtol=1e-4, atol=1e-5)


def test_every_candidate_gets_shares_and_a_radius_from_outside_cases():
    rows, info = measure(["model=tiny_llama", "data.n_edits=8"], [1], 4, 2)
    queries = ["paper (fc input, last)", "block 1, last", "block 1, mean", "block 1, subject"]
    held_out = ["zsre 95%"] if info["held_out"] else []  # none in the fixture
    calibrations = ["cf 1%", "cf 95%", *held_out]
    assert [(r["query"], r["calibration"]) for r in rows] == [
        (q, c) for q in queries for c in calibrations
    ]
    assert info["calibration"] == 4
    for row in rows:
        shares = [v for k, v in row.items() if k not in ("query", "calibration", "radius")]
        assert all(0 <= v <= 1 for v in shares) and 0 <= row["radius"] <= 2
