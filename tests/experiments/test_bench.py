"""`make bench` times every method on the same stream and keeps each row as it goes."""

import sys
from argparse import Namespace

import pytest

from experiments import bench, bench_retention


def test_bench_reports_each_method_and_the_elder_path_check(tmp_path, monkeypatch):
    argv = ["bench", "--models", "tiny_llama", "--n-edits", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "elder_plain,elder,elder_plus,ft_l"])
    bench.main()
    report = (tmp_path / "tiny_llama_4.md").read_text()
    for name in ["elder_plain", "elder", "elder_plus", "ft_l"]:
        assert f"| {name} | " in report
    assert "ELDER fast path speed-up" in report


def test_bench_compares_grace_batched_with_one_edit_after_another(tmp_path, monkeypatch):
    argv = ["bench", "--models", "tiny_llama", "--n-edits", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "grace_one_by_one,grace"])
    bench.main()
    report = (tmp_path / "tiny_llama_4.md").read_text()
    assert "GRACE batched values speed-up" in report and "allocation codes" not in report


def test_a_rome_row_says_that_it_includes_the_streams_one_time_work():
    args = Namespace(
        n_edits=20, models="gpt2_xl_random", device="cuda", methods="ft_l,rome", profile=False
    )
    ft_l, rome = bench.Row("ft_l", 0.1, 5, 1.0, 2.0), bench.Row("rome", 2.0, 7, 1.0, 2.0)
    with_rome = bench.report(args, "gpt2_xl_random", "zsre", [ft_l, rome], {}, [])
    without = bench.report(args, "gpt2_xl_random", "zsre", [ft_l], {}, [])
    assert "ROME's, WilKE's and AlphaEdit's s/edit include their one-time work" in with_rome
    assert "ROME" not in without


def test_retention_bench_writes_a_row_per_task_and_the_total(tmp_path, monkeypatch):
    argv = ["bench_retention", "--model", "tiny_llama", "--n", "2", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--tasks", "rte", "sst2", "--out", str(tmp_path)])
    bench_retention.main()
    report = (tmp_path / "retention_tiny_llama_2.md").read_text()
    assert "| rte | float32 | 32:0.1 | 2 |" in report  # the model's dtype, the config's batching
    assert "| sst2 | float32 | 32:0.1 | 2 |" in report
    assert "- float32 32:0.1: **" in report and "target" not in report  # a subset: no target


def test_retention_bench_times_batchings_side_by_side_and_compares_their_outputs(
    tmp_path, monkeypatch
):
    argv = ["bench_retention", "--model", "tiny_llama", "--n", "3", "--threads", "1"]
    argv += ["--tasks", "rte", "--batching", "1", "3:0", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bench_retention.main()
    report = (tmp_path / "retention_tiny_llama_3.md").read_text()
    assert "| rte | float32 | 1 | 3 | 3 |" in report and "| rte | float32 | 3:0 | 3 |" in report
    assert report.count("| 3/3 |") == 2  # left padding leaves every greedy output as it was
    assert "speed-up of float32 3:0 over float32 1: **" in report


def test_retention_bench_times_dtypes_side_by_side(tmp_path, monkeypatch):
    argv = ["bench_retention", "--model", "tiny_llama", "--n", "2", "--threads", "1"]
    argv += ["--tasks", "rte", "--dtypes", "float32", "bfloat16", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bench_retention.main()
    report = (tmp_path / "retention_tiny_llama_2.md").read_text()
    assert (
        "| rte | float32 | 32:0.1 | 2 |" in report and "| rte | bfloat16 | 32:0.1 | 2 |" in report
    )
    assert "--dtypes float32 bfloat16" in report
    assert "speed-up of bfloat16 32:0.1 over float32 32:0.1: **" in report


def test_retention_bench_with_profile_reports_the_cpu_time_per_torch_op(tmp_path, monkeypatch):
    argv = ["bench_retention", "--model", "tiny_llama", "--n", "2", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--tasks", "rte", "--out", str(tmp_path), "--profile"])
    bench_retention.main()
    report = (tmp_path / "retention_tiny_llama_2.md").read_text()
    assert "--profile`" in report and "| aten::" in report


def test_bench_names_what_needs_a_cuda_device_and_times_each_models_inference(
    tmp_path, monkeypatch
):
    argv = ["bench", "--models", "tiny_llama,tiny_gpt2", "--n-edits", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--device", "cpu", "--methods", "elder,elder_graph"])
    bench.main()
    for model in ("tiny_llama", "tiny_gpt2"):
        report = (tmp_path / f"{model}_4.md").read_text()
        (line,) = [r for r in report.splitlines() if r.startswith("| elder | ")]
        assert float(line.split(" | ")[3]) > 0 and line.endswith("| — |")  # no GPU: no peak
        assert "Not run here (they need a CUDA device): elder_graph." in report


def test_bench_profile_says_where_one_batchs_edit_spends_its_time(tmp_path, monkeypatch):
    argv = ["bench", "--models", "tiny_llama", "--n-edits", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "elder", "--profile"])
    bench.main()
    report = (tmp_path / "tiny_llama_4.md").read_text()
    assert "**elder**, profiled (`--profile`): one batch of 4: host " in report
    assert "| op (cpu) | share |" in report and "| aten::" in report


def test_bench_on_cuda_without_a_cuda_device_is_an_error(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--models", "tiny_llama", "--device", "cuda"])
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="error: --device cuda"):
        bench.main()


def test_a_failing_method_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    argv = ["bench", "--models", "tiny_llama", "--n-edits", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "ft_l,lora"])
    real = bench.time_stream

    def fail_ft_l(editor, batches):
        if type(editor).__name__ == "FTL":
            raise RuntimeError("out of memory")
        return real(editor, batches)

    monkeypatch.setattr(bench, "time_stream", fail_ft_l)
    with pytest.raises(SystemExit, match="1 method"):
        bench.main()
    report = (tmp_path / "tiny_llama_4.md").read_text()
    assert "**ft_l failed**: RuntimeError: out of memory" in report and "| lora | " in report
