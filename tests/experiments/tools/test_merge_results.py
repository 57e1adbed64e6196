"""Runs made on another machine come into the results folder whole, once, or not at all."""

import tarfile

import pytest

from experiments.results import append_row, read_rows
from experiments.tools.merge_results import main, merge


def results(root, *run_ids, ts="2026-11-26T22:00:00+00:00", machine="NVIDIA H100 80GB HBM3"):
    for run_id in run_ids:
        folder = root / "runs" / run_id
        (folder / "checkpoint").mkdir(parents=True)
        (folder / "metrics.json").write_text(f'{{"run": "{run_id}"}}')
        (folder / "checkpoint" / "state.pt").write_text("partial")
        append_row(root / "runs.csv", {"run_id": run_id, "timestamp": ts, "machine": machine})
    return root


def test_a_tarball_of_runs_appends_its_rows_and_copies_its_folders_without_checkpoints(
    tmp_path,
):
    here = results(tmp_path / "here", "old")
    there = results(tmp_path / "device" / "res", "rome_a", "rome_b")
    with tarfile.open(tmp_path / "res.tar.gz", "w:gz") as tar:
        tar.add(there, arcname="res")
    main([str(tmp_path / "res.tar.gz"), "--into", str(here)])
    rows = read_rows(here / "runs.csv")
    assert [r["run_id"] for r in rows] == ["old", "rome_a", "rome_b"]
    assert rows[1]["machine"] == "NVIDIA H100 80GB HBM3"
    assert (here / "runs" / "rome_b" / "metrics.json").read_text() == '{"run": "rome_b"}'
    assert not (here / "runs" / "rome_b" / "checkpoint").exists()


def test_merging_the_same_runs_again_adds_nothing(tmp_path):
    here, there = tmp_path / "here", results(tmp_path / "there", "rome_a")
    assert merge(there, here) == ["rome_a"]
    assert merge(there, here) == []
    assert len(read_rows(here / "runs.csv")) == 1


def test_a_run_folder_with_other_files_here_stops_the_merge_before_any_write(tmp_path):
    here = results(tmp_path / "here", "old")
    (here / "runs" / "rome_b" / "metrics.json").parent.mkdir(parents=True)
    (here / "runs" / "rome_b" / "metrics.json").write_text("another run")
    there = results(tmp_path / "there", "rome_a", "rome_b")
    with pytest.raises(FileExistsError, match="rome_b"):
        merge(there, here)
    assert [r["run_id"] for r in read_rows(here / "runs.csv")] == ["old"]
    assert not (here / "runs" / "rome_a").exists()


def test_a_row_without_its_run_folder_is_refused(tmp_path):
    there = results(tmp_path / "there", "rome_a")
    append_row(there / "runs.csv", {"run_id": "ghost", "timestamp": "t"})
    with pytest.raises(FileNotFoundError, match="ghost has no run folder"):
        merge(there, tmp_path / "here")
    assert not (tmp_path / "here" / "runs.csv").exists()
