"""The peer cross-check refuses what it cannot run before any work, spells EasyEdit's layer
names, scores both sides alike, and (with a checkout in $ELDER_EASYEDIT) runs end to end."""

import os
import sys

import pytest

from experiments import peer
from experiments.metrics import Prediction


def test_a_layer_is_spelled_as_easyedit_names_its_parameters():
    assert (
        peer.bracketed("model.layers.25.mlp.down_proj") == "model.layers[25].mlp.down_proj.weight"
    )
    assert peer.bracketed("transformer.h.8.mlp.c_fc") == "transformer.h[8].mlp.c_fc.weight"


def test_an_unknown_method_or_a_folder_that_is_no_checkout_is_one_error_line(tmp_path, monkeypatch):
    for extra, message in ((["--methods", "memit"], "no peer for"), ([], "not an EasyEdit")):
        argv = ["peer", "--easyedit", str(tmp_path), *extra]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stop:
            peer.main()
        assert str(stop.value).startswith("error: ") and message in str(stop.value)


def test_locality_is_scored_both_as_exact_and_as_easyedits_token_agreement():
    base = {"locality": [Prediction([1, 2], [1, 2]), Prediction([3, 4], [3, 4])]}
    side = {
        "edit": [Prediction([5], [5])],
        "rephrase": [Prediction([6], [7])],
        "locality": [Prediction([1, 2], [1, 2]), Prediction([3, 9], [3, 4])],
    }
    s = peer.scores(side, base)
    assert s["loc"] == 0.5 and s["loc_tok"] == 0.75
    assert s["rel_tok"] == 1.0 and s["gen_tok"] == 0.0


CHECKOUT = os.environ.get("ELDER_EASYEDIT")


@pytest.mark.skipif(not CHECKOUT, reason="set ELDER_EASYEDIT to an EasyEdit checkout")
def test_grace_agrees_with_easyedits_on_a_tiny_stream(tmp_path, monkeypatch):
    argv = ["peer", "--easyedit", CHECKOUT, "--model", "tiny_llama", "--n-edits", "4"]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "grace", "--out", str(tmp_path)])
    peer.main()
    rows = [
        r
        for r in (tmp_path / "tiny_llama_4.md").read_text().splitlines()
        if r.startswith("| grace")
    ]
    assert len(rows) == 2 and all(r.split("|")[-2].strip() == "1.000" for r in rows)  # same


def test_a_rerun_of_one_method_keeps_the_other_methods_rows_of_the_same_commit(tmp_path):
    out = tmp_path / "report.md"
    out.write_text(
        "- EasyEdit commit: `abc`\n\n| method | side |\n|---|---|\n"
        "| grace | ours | 1.000 |\n| grace | EasyEdit | 1.000 |\n| rome | ours | 0.5 |\n"
    )
    kept = peer.kept_rows(out, "abc", ["rome"])
    assert list(kept) == ["grace"] and len(kept["grace"]) == 2
    assert peer.kept_rows(out, "def", ["rome"]) == {}  # another commit: not comparable
