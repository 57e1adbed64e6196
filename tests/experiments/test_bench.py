"""`make bench` times every method on the same stream and keeps each row as it goes."""

import sys

from experiments import bench


def test_bench_reports_each_method_and_the_elder_path_check(tmp_path, monkeypatch):
    argv = ["bench", "--model", "tiny_llama", "--n-edits", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "elder_plain,elder,ft_l"])
    bench.main()
    report = (tmp_path / "tiny_llama_4.md").read_text()
    for name in ["elder_plain", "elder", "ft_l"]:
        assert f"| {name} | " in report
    assert "ELDER fast path speed-up" in report
