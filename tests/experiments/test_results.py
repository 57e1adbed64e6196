"""runs.csv: one schema for every method, widened (never corrupted) by new columns."""

import subprocess

from experiments.results import append_row, git_commit, read_rows


def test_a_row_with_new_columns_widens_the_header_and_keeps_old_rows(tmp_path):
    csv_path = tmp_path / "runs.csv"
    append_row(csv_path, {"run_id": "a", "reliability": 0.5})
    append_row(csv_path, {"run_id": "b", "reliability": 0.7, "retention": 0.3})
    rows = read_rows(csv_path)
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert rows[0]["retention"] == "" and rows[1]["retention"] == "0.3"


def test_the_commit_is_dirty_for_changed_code_but_not_for_earlier_results(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text("run_id\n")
    (tmp_path / "run.py").write_text("print()\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    (tmp_path / "results" / "runs.csv").write_text("run_id\na\n")  # a finished run's row
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "run.py").write_text("print(1)\n")
    assert git_commit(tmp_path).endswith("-dirty")


def test_outside_a_git_checkout_the_commit_is_the_one_its_sender_named(tmp_path, monkeypatch):
    monkeypatch.delenv("ELDER_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == "unknown"
    monkeypatch.setenv("ELDER_GIT_COMMIT", "abc1234")
    assert git_commit(tmp_path) == "abc1234"


def test_a_probe_report_names_its_command_and_machine_and_rounds_its_numbers(tmp_path):
    from experiments.results import machine, write_report

    file = tmp_path / "probe" / "report.md"
    text = write_report(
        file, "A probe", "python -m probe", 3.2, ["on 8 edits"], ["x", "y"], [["a", 0.12345]]
    )
    assert file.read_text() == text + "\n"
    assert "`python -m probe`" in text and machine() in text and "- on 8 edits" in text
    assert text.endswith("| x | y |\n|---|---|\n| a | 0.123 |")
