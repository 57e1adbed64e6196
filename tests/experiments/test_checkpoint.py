"""Checkpoints: a run killed anywhere and resumed ends exactly as an uninterrupted run."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from experiments.checkpoint import Checkpoints, resume_config
from experiments.results import PREDICTIONS, read_jsonl
from experiments.runner import run
from experiments.validation import NonFiniteLoss
from tests.conftest import ROOT, compose_cfg, tiny
from tests.elder.test_elder import _elder, _records
from tests.experiments import fakes

# 3 batches of 4 edits, a checkpoint after every batch, the edits saved at the end.
STREAM = (
    "model=tiny_llama",
    "logger=none",
    "data.n_edits=12",
    "method.iterations=4",
    "method.lr=1e-2",
    "checkpoint.every=1",
    "save=true",
    "method._target_=tests.experiments.fakes.PausingELDER",
)
# What must be identical; timings, ids and the command line (results_dir) may differ.
VARYING = {"run_id", "timestamp", "s_per_edit", "wall_s", "total_s", "overrides", "git_commit"}


def _run(results: Path, *overrides: str) -> dict:
    overrides = (*STREAM, f"results_dir={results}", "run_name=r", *overrides)
    return run(compose_cfg(*overrides), overrides)


def _resume(run_dir: Path) -> dict:
    overrides = (f"resume={run_dir}",)
    return run(compose_cfg(*overrides), overrides)


def _outcome(run_dir: Path) -> tuple[dict, str, str, dict[str, torch.Tensor]]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return (
        {k: v for k, v in metrics.items() if k not in VARYING},
        read_jsonl(run_dir / PREDICTIONS),
        (run_dir / "train.jsonl").read_text(),  # one line per batch, also when resumed
        load_file(str(run_dir / "edited" / "state.safetensors")),
    )


def _assert_same(run_dir: Path, reference: Path) -> None:
    metrics, predictions, train, state = _outcome(run_dir)
    ref_metrics, ref_predictions, ref_train, ref_state = _outcome(reference)
    assert metrics == ref_metrics
    # a resumed run's row names the run's own overrides (its variant), not `resume=...`
    overrides = json.loads((run_dir / "metrics.json").read_text())["overrides"]
    assert "method.lr=1e-2" in overrides and "resume=" not in overrides
    assert predictions == ref_predictions
    assert train == ref_train
    assert state.keys() == ref_state.keys()
    for key in state:
        assert torch.equal(state[key], ref_state[key]), key


def test_the_run_folder_logs_the_editors_statistics_of_every_batch(reference):
    lines = [json.loads(line) for line in (reference / "train.jsonl").read_text().splitlines()]
    assert [line["batch"] for line in lines] == [0, 1, 2]
    assert all(line["loss"] > 0 for line in lines)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    results = tmp_path_factory.mktemp("reference")
    _run(results)
    return results / "runs" / "r"


def _start(args: list[str], pause: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        fakes.PAUSE: pause,
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # same arithmetic as this process
    }
    return subprocess.Popen(
        [sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=log.open("w"), stderr=-2
    )


def _kill_when(process: subprocess.Popen, marker: Path, log: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"run ended before pausing:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("run never reached its pause point")
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_mid_batch_then_between_batches_then_resume_matches(tmp_path, reference):
    """Two real SIGKILLs: in the middle of batch 2, then before batch 3; two resumes."""
    results, log = tmp_path / "results", tmp_path / "log.txt"
    run_dir = results / "runs" / "r"
    args = [*STREAM, f"results_dir={results}", "run_name=r"]
    first = _start(args, f"1:middle:{tmp_path / 'a'}", log)
    _kill_when(first, tmp_path / "a", log)
    assert json.loads((run_dir / "checkpoint" / "latest.json").read_text())["batches_done"] == 1
    second = _start([f"resume={run_dir}"], f"2:start:{tmp_path / 'b'}", log)
    _kill_when(second, tmp_path / "b", log)
    assert json.loads((run_dir / "checkpoint" / "latest.json").read_text())["batches_done"] == 2
    third = _start([f"resume={run_dir}"], "", log)
    assert third.wait(timeout=900) == 0, log.read_text()[-3000:]
    _assert_same(run_dir, reference)


@pytest.mark.parametrize(
    "crash",
    [
        "0:start",  # after the base evaluation, before the first checkpoint
        "3:eval",  # after the last checkpoint, during the final evaluation
    ],
)
def test_crash_then_resume_matches(tmp_path, reference, monkeypatch, crash):
    """Cheaper in-process crashes (an exception where a kill would land) at more points."""
    monkeypatch.setenv(fakes.CRASH, crash)
    with pytest.raises(fakes.SimulatedKill):
        _run(tmp_path)
    monkeypatch.delenv(fakes.CRASH)
    _resume(tmp_path / "runs" / "r")
    _assert_same(tmp_path / "runs" / "r", reference)


def test_a_resumed_run_keeps_an_override_value_with_a_space(tmp_path, monkeypatch):
    results = tmp_path / "my results"
    monkeypatch.setenv(fakes.CRASH, "3:eval")
    with pytest.raises(fakes.SimulatedKill):
        _run(results)
    monkeypatch.delenv(fakes.CRASH)
    row = _resume(results / "runs" / "r")
    assert f"results_dir={results}" in shlex.split(row["overrides"])


def _crash_on_gpu_then_resume_here(tmp_path, monkeypatch, crash: str, old=False) -> dict:
    monkeypatch.setenv(fakes.CRASH, crash)
    monkeypatch.setattr("experiments.checkpoint.machine", lambda: "NVIDIA H100")
    with pytest.raises(fakes.SimulatedKill):
        _run(tmp_path)
    monkeypatch.delenv(fakes.CRASH)
    if old:  # as written on 2026-11-27 (commit ba1a321): the machine's name without its share
        (progress,) = (tmp_path / "runs" / "r" / "checkpoint").glob("step-*/progress.json")
        fields = json.loads(progress.read_text())
        fields["machines"] = list(fields.pop("by_machine"))
        progress.write_text(json.dumps(fields))
    for module in ("experiments.checkpoint", "experiments.runner"):
        monkeypatch.setattr(f"{module}.machine", lambda: "cpu:2xx86_64")
    return _resume(tmp_path / "runs" / "r")


def test_a_run_edited_on_a_gpu_and_evaluated_here_names_both_machines(tmp_path, monkeypatch):
    row = _crash_on_gpu_then_resume_here(tmp_path, monkeypatch, "3:eval")
    assert row["machine"] == "NVIDIA H100 + cpu:2xx86_64"
    assert "edit_s_by_machine" not in row  # every edit ran on the GPU: s/edit is its own


@pytest.mark.parametrize("old", [False, True], ids=["checkpoint", "checkpoint-of-ba1a321"])
def test_a_run_edited_on_two_machines_gives_each_its_own_s_per_edit(tmp_path, monkeypatch, old):
    row = _crash_on_gpu_then_resume_here(tmp_path, monkeypatch, "1:start", old)  # 1 of 3 there
    assert row["machine"] == "NVIDIA H100 + cpu:2xx86_64"
    gpu, cpu = row["edit_s_by_machine"].split("; ")
    assert gpu.startswith("NVIDIA H100: 4 edits, ") and gpu.endswith(" s/edit")
    assert cpu.startswith("cpu:2xx86_64: 8 edits, ")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(fakes.NAN_BATCH, "1")
    with pytest.raises(NonFiniteLoss, match=r"edit batch 2: loss=nan; .*\(after batch 1\)"):
        _run(tmp_path, "method._target_=tests.experiments.fakes.DivergingELDER")
    latest = tmp_path / "runs" / "r" / "checkpoint" / "latest.json"
    assert json.loads(latest.read_text())["batches_done"] == 1


def test_resume_refuses_overrides_that_change_the_run(tmp_path):
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(compose_cfg(), resolve=True))
    overrides = (f"resume={tmp_path}", "method.k=3")
    with pytest.raises(ValueError, match="method.k: run has 2, command line gives 3"):
        resume_config(compose_cfg(*overrides), overrides)
    same = (f"resume={tmp_path}", "method.k=2")
    assert resume_config(compose_cfg(*same), same).resume == str(tmp_path)


def test_resume_may_checkpoint_more_often(tmp_path):
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(compose_cfg(), resolve=True))
    overrides = (f"resume={tmp_path}", "checkpoint.every=5")
    assert resume_config(compose_cfg(*overrides), overrides).checkpoint.every == 5


def test_a_half_written_checkpoint_is_never_read(tmp_path):
    records = _records(8)
    editor = _elder(tiny("llama"), iterations=2)
    checkpoints = Checkpoints(tmp_path, 1, editor)
    editor.edit(records[:4])
    checkpoints.save(1, 0.0)
    state, _ = editor.state()
    # What a kill while writing checkpoint 2 leaves: a temporary folder and an unnamed one.
    (tmp_path / "checkpoint" / ".tmp-x").mkdir()
    (tmp_path / "checkpoint" / "step-000002").mkdir()
    (tmp_path / "checkpoint" / "step-000002" / "state.safetensors").write_bytes(b"trunc")
    editor.edit(records[4:])
    fresh = _elder(tiny("llama"), iterations=2)
    assert Checkpoints(tmp_path, 1, fresh).restore() == (1, 0.0)
    restored, _ = fresh.state()
    assert all(torch.equal(state[k], restored[k]) for k in state)
    Checkpoints(tmp_path, 1, editor).save(2, 0.0)  # replaces the debris, then cleans up
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == [
        "latest.json",
        "step-000002",
    ]


def test_ask_prints_edited_and_unedited_answers(reference, capsys):
    from experiments.tools.ask import main

    prompt = _records(1)[0].prompt
    assert main([str(reference), prompt, "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "(edit prompt of this run; target:" in out
    assert "edited   (elder: deferred=" in out
    assert "unedited:" in out
