"""Every registered method resumes exactly: SIGKILL mid-stream, resume, same metrics and state."""

import pytest

from baselines.registry import EDITORS
from experiments.runner import run
from tests.conftest import compose_cfg
from tests.experiments.test_checkpoint import _kill_when, _start
from tests.experiments.test_checkpoint import _outcome as outcome
from tests.experiments.test_checkpoint import _resume as resume

# Per method: overrides that keep a run short on tiny_llama. A case is a method plus options.
CASES = {
    "elder": ["method.iterations=3"],
    "alphaedit": [
        "method.v_num_grad_steps=3",
        "method.context_prefixes=[The weather]",
        "method.mom2_n_samples=8",
        "method.stats_dir=${results_dir}/stats",
    ],  # fmt: skip
    "alphaedit_batched": [
        "method=alphaedit",
        "method.v_num_grad_steps=3",
        "method.context_prefixes=[The weather]",
        "method.mom2_n_samples=8",
        "method.stats_dir=${results_dir}/stats",
        "method.batch_size=6",  # the edits of batch 2 wait in the buffer at the kill
    ],  # fmt: skip
    "elder_plus": [
        "method=elder",
        "method.iterations=3",
        "method.route=memory",
        "method.query_pool=mean",
        "method.rehearse=2",
        "method.prefixes=1",
        "method.protect=null_space",
    ],  # fmt: skip
    "elder_subject": [
        "method=elder",
        "method.iterations=3",
        "method.route=memory",
        "method.query_pool=subject",
        "method.protect=null_space",
    ],  # fmt: skip
    "defer": ["method.iterations=3"],
    "serac": ["method.classifier_steps=3", "method.counterfactual_steps=2", "method.train_size=4"],
    "ft_l": ["method.iterations=3"],
    "grace": ["method.iterations=3"],
    "lemoe": ["method.iterations=3"],
    "lemoe_kmeans": [
        "method=lemoe",
        "method.iterations=3",
        "method.order=kmeans",
        "method.plan_window=8",
    ],  # fmt: skip
    "lora": ["method.iterations=3"],
    "melo": ["method.iterations=3"],
    "wise": ["method.n_iter=3", "method.save_freq=4", "method.merge_freq=8"],  # a merge mid-run
    "t_patcher": [
        "method.max_steps=30",
        "method.check_every=5",
        "method.start_check=0",
        "method.memory_size=8",
    ],  # fmt: skip
    "wilke": [
        "method.v_num_grad_steps=3",
        "method.context_prefixes=[The weather]",
        "method.mom2_n_samples=8",
        "method.stats_dir=${results_dir}/stats",
    ],  # fmt: skip
    "rome": [
        "method.v_num_grad_steps=3",
        "method.context_prefixes=[The weather]",
        "method.mom2_adjustment=false",
    ],  # fmt: skip
}
# 3 batches of 4, a checkpoint after each; the kill lands after batch 2 trained, unrecorded.
STREAM = ["model=tiny_llama", "logger=none", "data.n_edits=12", "checkpoint.every=1",
          "save=true", "eval.batch_size=8"]  # fmt: skip


def _method(case: str) -> str:
    """A case's method: its ``method=`` option, else the case's own name."""
    return next((o.split("=")[1] for o in CASES[case] if o.startswith("method=")), case)


def test_every_registered_method_has_a_case():
    assert {_method(case) for case in CASES} == set(EDITORS)


def _overrides(case: str, results) -> list[str]:
    options = CASES[case]
    method = _method(case)
    killable = f"tests.experiments.fakes.Killable{EDITORS[method].__name__}"
    return [
        *STREAM,
        f"method={method}",
        *(o for o in options if not o.startswith("method=")),
        f"method._target_={killable}",
        f"results_dir={results}",
        "run_name=r",
    ]


@pytest.mark.parametrize("case", CASES)
def test_a_killed_run_resumes_to_the_uninterrupted_runs_metrics_and_state(tmp_path, case):
    whole = _overrides(case, tmp_path / "whole")
    run(compose_cfg(*whole), tuple(whole))
    killed = _overrides(case, tmp_path / "killed")
    log = tmp_path / "log.txt"
    process = _start(killed, f"1:trained:{tmp_path / 'marker'}", log)
    _kill_when(process, tmp_path / "marker", log)
    run_dir = tmp_path / "killed" / "runs" / "r"
    resume(run_dir)
    metrics, predictions, train, state = outcome(run_dir)
    ref_metrics, ref_predictions, ref_train, ref_state = outcome(tmp_path / "whole" / "runs" / "r")
    assert metrics == ref_metrics
    assert predictions == ref_predictions
    assert train == ref_train
    assert state.keys() == ref_state.keys()
    for key in state:
        assert (state[key] == ref_state[key]).all(), key
