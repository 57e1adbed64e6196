"""Reliability on the first and last edits of a run, read from its predictions."""

import json

import pytest

from experiments.tools.forgetting import edit_exact, first_last, main


def _run(tmp_path, exact_edits):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"split": "edit", "exact": e} for e in exact_edits]
    rows += [{"split": "rephrase", "exact": True}] * len(exact_edits)  # ignored
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_only_edit_prompts_count_in_stream_order(tmp_path):
    run = _run(tmp_path, [False, True, True])
    assert edit_exact(run) == [False, True, True]


def test_first_and_last_windows(tmp_path):
    assert first_last([True, False, False, True, True], 2) == (0.5, 1.0)


def test_window_longer_than_the_stream_is_an_error():
    with pytest.raises(ValueError, match="window"):
        first_last([True], 2)


def test_cli_prints_one_line_per_run(tmp_path, capsys):
    run = _run(tmp_path, [True] * 3 + [False] * 3)
    assert main([str(run), "--window", "3"]) == 0
    assert capsys.readouterr().out == "run: first / last 3 of 6 edits: 1.00 / 0.00\n"


def test_cli_names_the_missing_file(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "predictions.jsonl" in capsys.readouterr().err
