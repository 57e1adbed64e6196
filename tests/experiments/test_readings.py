"""Free decoding, immediate reliability and the neighborhood score, beside teacher forcing."""

import json
from pathlib import Path

from experiments import metrics as M
from experiments.free_decoding import begins_with, matches
from experiments.results import PREDICTIONS, read_jsonl
from experiments.runner import run
from tests.conftest import compose_cfg

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "counterfact_paper.json"
FAST = ("method.iterations=2", "logger=none", "eval.batch_size=8", "model=tiny_llama")


def _paper_run(tmp_path, *overrides):
    cfg = compose_cfg(
        "data=counterfact_paper",
        f"data.path={FIXTURE}",
        "data.n_edits=8",
        f"results_dir={tmp_path}",
        "run_name=r",
        *FAST,
        *overrides,
    )
    return run(cfg), tmp_path / "runs" / "r"


def test_a_free_answer_is_cut_at_its_first_newline_and_normalised():
    assert matches("  The Paris.\nIt is a city", "paris")
    assert not matches("Paris, France", "Paris")


def test_the_prefix_reading_accepts_an_answer_that_goes_on_after_the_target():
    assert begins_with("Paris, France", "Paris")
    assert not begins_with("Parisian", "Paris")


def test_the_neighborhood_score_counts_prompts_where_the_truth_stays_more_likely():
    truth = [M.Prediction([1], [1], logprob=-1.0), M.Prediction([1], [1], logprob=-3.0)]
    new = [M.Prediction([2], [2], logprob=-2.0), M.Prediction([2], [2], logprob=-2.0)]
    assert M.neighborhood_score(truth, new) == 0.5


def test_a_counterfact_paper_run_reports_every_reading(tmp_path):
    row, _ = _paper_run(tmp_path)
    for key in (
        "reliability_gen",
        "reliability_gen_prefix",
        "generalization_gen",
        "reliability_immediate",
        "neighborhood_score",
        "base_neighborhood_score",
    ):
        assert 0.0 <= row[key] <= 1.0, key


def test_a_counterfact_paper_run_probes_each_held_out_phrasing_once(tmp_path):
    _, run_dir = _paper_run(tmp_path)
    rows = read_jsonl(run_dir / PREDICTIONS)
    count = {split: sum(r["split"] == split for r in rows) for split in {r["split"] for r in rows}}
    # 4 cases: 8 edits, 4 held-out paraphrases, 3 neighborhood prompts each (truth, new)
    assert count == {"edit": 8, "rephrase": 4, "locality": 12, "locality_alt": 12}
    assert all("generated" in r for r in rows if r["split"] in ("edit", "rephrase"))


def test_immediate_reliability_is_the_mean_over_every_batch_right_after_its_edit(tmp_path):
    row, run_dir = _paper_run(tmp_path)
    lines = [json.loads(x) for x in (run_dir / "immediate.jsonl").read_text().splitlines()]
    assert [x["batch"] for x in lines] == [0, 1]  # 8 edits, batches of 4
    assert row["reliability_immediate"] == round(sum(x["exact"] for x in lines) / 8, 6)


def test_the_readings_are_off_when_the_eval_config_says_so(tmp_path):
    row, run_dir = _paper_run(tmp_path, "eval.free_decoding=false", "eval.immediate=false")
    assert "reliability_gen" not in row and "reliability_immediate" not in row
    assert not (run_dir / "immediate.jsonl").exists()
