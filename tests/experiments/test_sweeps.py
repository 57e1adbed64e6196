"""Named sweeps (conf/sweep: the paper's Table 5), the local and SLURM launchers, and runs.csv
under concurrent writers."""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from elder.config import ELDERConfig
from experiments.results import CORE_COLUMNS, append_row, read_rows
from tests.conftest import CONF, ROOT

# The paper's Table 5 (appendix, "Hyperparameter Values"); METHODS.md lists the same ranges.
TABLE5 = {
    "k": [1, 2, 3, 4, 5],
    "N": [2, 4, 8, 16],
    "lam": [0.001, 0.01, 0.1, 1, 10],
    "eps": [0, 6, 12, 18, 24],
}
# A run as small as the runner allows: 2 edits in one batch, 1 iteration, no checkpoints.
TINY = (
    "model=tiny_gpt2",
    "data.n_edits=2",
    "data.batch_size=2",
    "method.iterations=1",
    "eval.batch_size=8",
    "checkpoint.every=0",
    "logger=none",
)


def _hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _jobs(*overrides: str) -> list[list[str]]:
    """The jobs `python run.py -m <overrides>` launches, as the basic sweeper expands them."""
    parser = OverridesParser.create()
    fixed = [
        o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()
    ]
    params = [f"{k}={v}" for k, v in _hydra_cfg(*fixed).hydra.sweeper.params.items()]
    return BasicSweeper.split_arguments(parser.parse_overrides([*params, *overrides]), None)[0]


def _method(*overrides: str) -> ELDERConfig:
    """The ELDERConfig a job builds (its checks are the ones a run would fail on)."""
    method = OmegaConf.to_container(_hydra_cfg(*overrides).method, resolve=True)
    method.pop("_target_")
    return ELDERConfig(**method)


def _allocations(N: int, k: int, L: int = 6) -> int:
    """C(N, k)^L: ELDER gives each distinct label one, so a 1000-edit stream needs 1000."""
    return math.comb(N, k) ** L


@pytest.mark.parametrize("name", ["k", "N", "lam", "eps"])
def test_each_table5_sweep_expands_to_the_papers_grid_of_runs_a_1000_edit_stream_fits(name):
    sweep = f"+sweep=table5_{name}"
    jobs = _jobs(sweep)
    configs = [_method(*job) for job in jobs]
    grid = [getattr(c, name) for c in configs]
    defaults = ELDERConfig(layer_pattern="{}", first_layer=0)
    # k=5 > N=4 is refused by ELDERConfig; k=4 at N=4 and N=2 at k=2 have one allocation.
    point = {"N": defaults.N, "k": defaults.k, "L": defaults.L}
    fits = [
        v
        for v in TABLE5[name]
        if name not in ("k", "N") or _allocations(**{**point, name: v}) >= 1000
    ]
    assert grid == fits
    others = {"k", "N", "lam", "eps"} - {name}
    for c in configs:  # one hyperparameter at a time, the others at the paper's defaults
        assert {o: getattr(c, o) for o in others} == {o: getattr(defaults, o) for o in others}
    assert _hydra_cfg(sweep).hydra.sweep.dir.startswith(f"multirun/table5_{name}/")


def test_the_k_sweep_reaches_k4_and_k5_with_a_larger_N_from_the_command_line():
    jobs = _jobs("+sweep=table5_k", "method.k=4,5", "method.N=8")
    configs = [_method(*job) for job in jobs]
    assert [c.k for c in configs] == [4, 5]
    assert all(_allocations(c.N, c.k, c.L) >= 1000 for c in configs)


def test_the_eps_sweep_evaluates_retention_and_the_others_edit_metrics_only():
    # The paper chose ε by test retention on the general tasks, k, N and λ by generalization.
    for name, choice in (("eps", "full"), ("k", "edit"), ("N", "edit"), ("lam", "edit")):
        cfg = _hydra_cfg(f"+sweep=table5_{name}")
        assert cfg.hydra.runtime.choices.eval == choice
        assert ("retention" in cfg.eval) == (choice == "full")


def test_the_local_launcher_is_joblib_and_the_slurm_one_asks_for_one_gpu():
    local = _hydra_cfg("hydra/launcher=local").hydra.launcher
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs >= 1
    slurm = _hydra_cfg("hydra/launcher=slurm").hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.gpus_per_node, slurm.tasks_per_node) == (1, 1)
    assert slurm.cpus_per_task >= 1 and slurm.timeout_min > 0
    assert any("OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK" in line for line in slurm.setup)


def test_local_launcher_workers_split_the_cores_instead_of_oversubscribing(monkeypatch):
    from joblib import Parallel, cpu_count, delayed

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    n_jobs = _hydra_cfg("hydra/launcher=local").hydra.launcher.n_jobs

    def torch_threads() -> int:  # local: sent by value, the worker imports torch only
        import torch

        return torch.get_num_threads()

    # The same call as hydra-joblib-launcher (which hard-codes the loky backend).
    threads = Parallel(n_jobs=n_jobs, backend="loky")(delayed(torch_threads)() for _ in range(2))
    assert threads == [max(cpu_count() // n_jobs, 1)] * 2


def _multirun(tmp_path: Path, *overrides: str, threads: str | None = None) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    done = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            *TINY,
            "method.k=1,2",
            f"results_dir={tmp_path}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            *overrides,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(tmp_path / "runs.csv")
    for row in rows:
        assert (tmp_path / "runs" / row["run_id"] / "metrics.json").exists()
    return rows


def _k_of(row: dict) -> str:
    return next(o for o in row["overrides"].split() if o.startswith("method.k="))


def test_a_two_job_sweep_through_joblib_writes_two_rows(tmp_path):
    rows = _multirun(tmp_path, "hydra/launcher=local", "hydra.launcher.n_jobs=2")
    assert sorted(_k_of(r) for r in rows) == ["method.k=1", "method.k=2"]


def test_a_two_job_sweep_through_submitit_local_writes_two_rows(tmp_path):
    # submitit's local executor starts every job at once and sets no thread limit: one each.
    rows = _multirun(
        tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", threads="1"
    )
    assert sorted(_k_of(r) for r in rows) == ["method.k=1", "method.k=2"]
    assert list((tmp_path / "multirun" / ".submitit").glob("*/*_log.out"))


def _writer(csv_path: Path, worker: int, n: int, start) -> None:
    start.wait()
    for i in range(n):
        row = {"run_id": f"w{worker}-{i}", "seed": worker, "reliability": f"{worker}.{i}"}
        if i % 10 == 5:  # widening the header rewrites the whole file while others append
            row[f"extra_w{worker}_{i}"] = i
        append_row(csv_path, row)


def test_concurrent_writers_keep_every_row_intact_under_one_header(tmp_path):
    csv_path, workers, n = tmp_path / "runs.csv", 4, 25
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(csv_path, w, n, start)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    with open(csv_path, newline="") as f:
        lines = list(csv.reader(f))
    header, body = lines[0], lines[1:]
    extras = {f"extra_w{w}_{i}" for w in range(workers) for i in range(5, n, 10)}
    assert header[: len(CORE_COLUMNS)] == CORE_COLUMNS
    assert set(header[len(CORE_COLUMNS) :]) == extras
    assert all(len(line) == len(header) for line in body)
    rows = read_rows(csv_path)
    assert sorted(r["run_id"] for r in rows) == sorted(
        f"w{w}-{i}" for w in range(workers) for i in range(n)
    )
    for r in rows:
        worker, i = r["run_id"][1:].split("-")
        assert (r["seed"], r["reliability"]) == (worker, f"{worker}.{i}")
        assert r.get(f"extra_w{worker}_{i}", "") == (i if int(i) % 10 == 5 else "")
