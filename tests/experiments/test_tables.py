"""`make tables`: cells from matching runs only, seeds averaged, missing cells with commands."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from experiments.configs import compose
from experiments.retention.prompts import PROMPT_VERSION
from experiments.tables.ablation_table import ablation_table
from experiments.tables.edit_tables import table1, table3, table5
from experiments.tables.figures import all_figures, fig3_overrides
from experiments.tables.gpu_table import gpu_table
from experiments.tables.names import ELDER_STUDY_BASE
from experiments.tables.options_table import options_table
from experiments.tables.render import MISSING, Num, to_markdown, to_tex
from experiments.tables.retention_tables import table2
from experiments.tables.routing_table import memory_routing_table, routing_table
from experiments.tables.runs import Runs, Spec, deciding, load_runs

ROOT = Path(__file__).resolve().parents[2]
# The ELDER configuration that Tables 4-5 and Figs. 2-3 vary (its pre-#23 defaults).
STUDY = " ".join(f"{k}={v}" for k, v in ELDER_STUDY_BASE.items())
GRACE_0P = "method.replacement=replace_prompt"  # Fig. 2's GRACE curves: the pre-#26 default
PNG = b"\x89PNG"


def row(run_id: str, **kw: object) -> dict[str, object]:
    """A runs.csv row: ELDER on SmolLM2, zsRE, 1000 edits, seed 0, unless told otherwise."""
    base = {
        "run_id": run_id,
        "timestamp": "2026-11-26T07:00:00+00:00",
        "method": "elder",
        "model": "smollm2_135m",
        "data": "zsre",
        "n_edits": 1000,
        "seed": 0,
        "reliability": 0.5,
        "generalization": 0.4,
        "locality": 0.9,
        "protocol": "after_stream_teacher_forced",
        "overrides": "",
        "base_reliability": 0.0,
        "base_generalization": 0.0,
    }
    return {**base, **kw}


def write_runs(results: Path, rows: list[dict[str, object]]) -> Runs:
    """``<results>/runs.csv`` with the union of the rows' columns (absent cells empty), and
    for each row without one the ``config.yaml`` that ``python run.py`` writes for its method,
    model, data, stream length, seed and overrides; the runs as the tables read them."""
    results.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(k for r in rows for k in r))
    with open(results / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        folder = results / "runs" / str(r["run_id"])
        if not (folder / "config.yaml").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            args = [f"{k}={r[k]}" for k in ("method", "model", "data", "seed")]
            cfg = compose([*args, f"data.n_edits={r['n_edits']}", *shlex.split(r["overrides"])])
            (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return load_runs(results)


def cell(table, block: str, method: str, column: int):
    """The cell of a table by block label, row label and column index."""
    (found,) = [b for b in table.blocks if b.label == block]
    (line,) = [r for r in found.rows if r[0] == method]
    return line[column]


def test_a_matching_row_fills_its_cell_and_lists_its_run(tmp_path):
    overrides = "method=elder eval=full eval.retention.n_per_task=100 save=true run_name=x"
    runs = write_runs(tmp_path, [row("r1", overrides=overrides)])
    table = table1(runs)
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1) == Num(50.0)
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 2) == Num(40.0)
    assert table.runs["ZsRE · SmolLM2-135M · ELDER"] == ["r1"]
    assert "[r1](../runs/r1/)" in to_markdown(table)


def test_table3_lists_each_machines_s_per_edit_for_a_run_edited_on_two(tmp_path):
    shares = "NVIDIA H100: 400 edits, 1.527 s/edit; cpu:2xx86_64: 600 edits, 33.1 s/edit"
    one = row("here", method="lora", s_per_edit=3.0, extra_params=1, machine="cpu:2xx86_64")
    two = row(
        "both",
        method="rome",
        s_per_edit=20.5,
        extra_params=1,
        machine="NVIDIA H100 + cpu:2xx86_64",
        edit_s_by_machine=shares,
    )
    table = table3(write_runs(tmp_path, [one, two]))
    assert table.runs["ZsRE · SmolLM2-135M · ROME"] == [f"both ({shares})"]
    assert table.runs["ZsRE · SmolLM2-135M · LoRA"] == ["here (cpu:2xx86_64)"]


def test_a_row_with_a_variant_override_does_not_fill_the_default_cell(tmp_path):
    runs = write_runs(tmp_path, [row("lr", overrides="method.lr=1e-3")])
    table = table1(runs)
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1) == MISSING
    assert "ZsRE · SmolLM2-135M · ELDER" not in table.runs


def test_an_override_at_its_default_value_is_the_default_run(tmp_path):
    runs = write_runs(tmp_path, [row("k2", overrides="+sweep=table5_k method.k=2")])
    assert cell(table1(runs), "ZsRE · SmolLM2-135M", "ELDER", 2) == Num(40.0)


def test_table5_varies_the_study_configuration_and_its_default_row_is_that_run(tmp_path):
    overrides = f"+sweep=table5_k method.k=2 {STUDY}"
    runs = write_runs(tmp_path, [row("k2", overrides=overrides)])
    assert cell(table5(runs), "ZsRE · SmolLM2-135M · k", "k=2 (default)", 2) == Num(40.0)
    legacy = cell(table1(runs), "ZsRE · SmolLM2-135M", "ELDER (pre-#23 defaults)", 2)
    assert legacy == Num(40.0)


def test_a_sweep_value_without_enough_allocations_for_1000_labels_is_na_with_its_reason(
    tmp_path,
):
    runs = write_runs(tmp_path, [row("k4", overrides=f"method.k=4 method.N=8 {STUDY}")])
    table = table5(runs)
    # k=4 at the default N=4 leaves C(4,4)^6 = 1 allocation: its row is the run at N=8.
    assert cell(table, "ZsRE · SmolLM2-135M · k", "k=4, N=8", 2) == Num(40.0)
    # N=2 at the default k=2 has no N or k that fits: no run, no command, the reason instead.
    assert cell(table, "ZsRE · SmolLM2-135M · N", "N=2", 1) == "n/a"
    assert not any("method.N=2" in label for label in table.missing)
    assert any("N=2 has no run" in n and "C(2,2)^6 = 1" in n for n in table.notes)


def test_a_sweep_run_on_a_shorter_stream_adds_no_table5_setting(tmp_path):
    rows = [row("lam1", data="counterfact", n_edits=200, overrides=f"method.lam=1 {STUDY}")]
    table = table5(write_runs(tmp_path, rows))
    assert not any(block.label.startswith("CounterFact") for block in table.blocks)
    rows = [row("lam1", data="counterfact", overrides=f"method.lam=1 {STUDY}")]
    table = table5(write_runs(tmp_path, rows))
    assert cell(table, "CounterFact · SmolLM2-135M · λ", "λ=1", 1) == Num(50.0)


def test_two_seeds_are_averaged_from_the_latest_row_of_each(tmp_path):
    rows = [
        row("old", seed=0, reliability=0.0, timestamp="2026-11-25T00:00:00+00:00"),
        row("s0", seed=0, reliability=0.4),
        row("s1", seed=1, reliability=0.6),
    ]
    table = table1(write_runs(tmp_path, rows))
    value = cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1)
    assert (round(value.mean, 6), value.n) == (50.0, 2)
    assert abs(value.std - 14.1421) < 1e-3
    assert table.runs["ZsRE · SmolLM2-135M · ELDER"] == ["s0", "s1"]
    assert "50.00 ± 14.14 (n=2)" in to_markdown(table)


def test_a_missing_cell_is_reported_with_the_command_that_produces_it(tmp_path):
    table = table2(write_runs(tmp_path, [row("no_retention")]))
    label = "CounterFact · SmolLM2-135M · GRACE · eval=full"
    command = "python run.py method=grace model=smollm2_135m data=counterfact eval=full"
    assert table.missing[label] == command
    assert f"- {label}: `{command}`" in to_markdown(table)


def test_a_retention_row_made_with_older_prompts_fills_no_cell(tmp_path):
    rows = [row("v1", method="melo", retention=0.1), row("now", method="ft_l", retention=0.2)]
    write_runs(tmp_path, rows)
    for run_id, version in [("v1", "gu2024-v1"), ("now", PROMPT_VERSION)]:
        (tmp_path / "runs" / run_id / "retention.json").write_text(
            json.dumps({"prompt_version": version})
        )
    table = table2(load_runs(tmp_path))
    assert cell(table, "", "MELO", 1) == MISSING
    assert cell(table, "", "FT-L", 1) == Num(20.0, digits=1)


def test_a_retention_cell_names_the_sample_its_run_folder_used(tmp_path):
    rows = [row("resumed", method="lemoe", retention=0.1, overrides="resume=results/runs/x")]
    write_runs(tmp_path, rows)
    (tmp_path / "runs" / "resumed" / "retention.json").write_text(
        json.dumps({"prompt_version": PROMPT_VERSION, "n_per_task": 100})
    )
    table = table2(load_runs(tmp_path))
    assert table.runs["ZsRE · SmolLM2-135M · LEMoE · eval=full"] == ["resumed (n_per_task=100)"]


def test_the_tex_output_is_a_well_formed_booktabs_tabular(tmp_path):
    rows = [row("s0", seed=0), row("s1", seed=1, reliability=0.7)]
    tex = to_tex(table1(write_runs(tmp_path, rows)))
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    n_cols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    body = tex.split(r"\toprule")[1].split(r"\bottomrule")[0]
    for line in body.splitlines():
        if line.endswith(r"\\") and "multicolumn" not in line:
            assert len(re.findall(r"(?<!\\)&", line)) == n_cols - 1, line
    assert r"$\pm$" in tex and "_" not in body.replace(r"\_", "")


def write_curve(results: Path, run_id: str, values: list[float]) -> None:
    folder = results / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    points = [
        {"edits": 100 * (i + 1), "reliability": v, "extra_params": 1000 * (i + 1)}
        for i, v in enumerate(values)
    ]
    (folder / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))


def curve_results(results: Path) -> Path:
    """Synthetic curve runs: GRACE and ELDER (two seeds) on 400 CounterFact edits."""
    kw = {"model": "smollm2_135m", "data": "counterfact", "n_edits": 400}
    rows = [
        row(
            "grace0", method="grace", **kw, overrides=f"eval.every=100 data.n_edits=400 {GRACE_0P}"
        ),
        row("elder0", seed=0, **kw, overrides=f"eval.every=100 {STUDY}"),
        row("elder1", seed=1, **kw, overrides=f"eval.every=100 {STUDY}"),
    ]
    write_runs(results, rows)
    write_curve(results, "grace0", [1.0, 0.9, 0.8, 0.7])
    write_curve(results, "elder0", [1.0, 1.0, 0.9, 0.9])
    write_curve(results, "elder1", [1.0, 0.8, 0.9, 0.7])
    return results


def test_figures_are_written_from_curve_files_and_a_figure_without_data_is_not(tmp_path):
    results = curve_results(tmp_path)
    fig2, _, fig3, fig4 = all_figures(load_runs(results), results)
    assert fig2.path.read_bytes()[:4] == PNG
    assert sorted(fig2.runs) == ["elder0", "elder1", "grace0"]
    assert fig3.path.read_bytes()[:4] == PNG  # the default L only
    assert fig4.path is None and not (results / "figures" / "fig4_codes_tsne.png").exists()
    assert fig4.missing[0].startswith("python -m experiments.elder_analysis.allocation_codes")


def test_a_figure_short_of_the_papers_stream_or_seeds_says_so_and_names_the_full_command(
    tmp_path,
):
    results = curve_results(tmp_path)  # 400 edits; GRACE one seed, ELDER two
    fig2, _, fig3, _ = all_figures(load_runs(results), results)
    assert "stream of 400 edits (the paper's: 4000)" in fig2.note
    assert "seeds below 2: GRACE (replace 0..p, pre-#26 default): 1" in fig2.note
    assert "ELDER" not in fig2.note
    args = "model=smollm2_135m data=counterfact data.n_edits=4000 eval.every=100 seed=0,1"
    assert fig2.missing[0] == f"python run.py -m method=grace {args} {GRACE_0P}"
    assert fig2.missing[1].startswith(f"python run.py -m method=elder {args} method.query=")
    assert "no curve: L=4, L=8" in fig3.note
    assert fig3.missing[0].endswith("method.L=4 method.eps=8")
    assert len(fig3.missing) == 3  # every L again on the paper's stream, the default L too


def test_the_elder_plus_figure_draws_a_comparator_from_its_figure_2_runs_when_none_is_current(
    tmp_path,
):
    results = curve_results(tmp_path)  # Figure 2's curves: pre-#26 GRACE, pre-#23 ELDER
    rows = list(csv.DictReader((results / "runs.csv").read_text().splitlines()))
    kw = {"model": "smollm2_135m", "data": "counterfact", "n_edits": 400}
    plus = row("plus0", **kw, overrides="+preset=elder_plus eval.every=100")
    write_runs(results, [*rows, plus])
    write_curve(results, "plus0", [1.0, 1.0, 1.0, 0.95])
    _, plus_fig, _, _ = all_figures(load_runs(results), results)
    assert plus_fig.path.read_bytes()[:4] == PNG
    assert sorted(plus_fig.runs) == ["elder0", "elder1", "grace0", "plus0"]
    # at today's defaults no comparator has a curve: each is named missing, with its command
    assert "ELDER+ (ours, +preset=elder_plus): 1, ELDER: 0, GRACE: 0" in plus_fig.note
    args = "model=smollm2_135m data=counterfact data.n_edits=4000 eval.every=100 seed=0,1"
    assert plus_fig.missing == [
        f"python run.py -m {m} {args}"
        for m in ("+preset=elder_plus", "method=elder", "method=grace")
    ]


def test_figure_3_varies_l_with_eps_at_the_defaults_share_of_the_code_bits(tmp_path):
    assert fig3_overrides(6) == ELDER_STUDY_BASE
    assert fig3_overrides(2) == {**ELDER_STUDY_BASE, "method.L": "2", "method.eps": "4"}
    assert fig3_overrides(8) == {**ELDER_STUDY_BASE, "method.L": "8", "method.eps": "16"}
    kw = {"model": "smollm2_135m", "data": "counterfact", "n_edits": 400}
    rows = [
        row("l8_eps16", **kw, overrides=f"method.L=8 method.eps=16 {STUDY}"),
        row("l4_eps12", **kw, overrides=f"method.L=4 {STUDY}"),  # ε of L=6: not a Figure 3 run
    ]
    write_runs(tmp_path, rows)
    write_curve(tmp_path, "l8_eps16", [0.9, 0.8])
    write_curve(tmp_path, "l4_eps12", [0.9, 0.8])
    fig3 = all_figures(load_runs(tmp_path), tmp_path)[2]
    assert fig3.runs == ["l8_eps16"] and "no curve: L=4, L=6" in fig3.note


def test_a_curve_on_a_shorter_stream_is_not_drawn_beside_a_longer_one(tmp_path):
    kw = {"model": "smollm2_135m", "data": "counterfact"}
    rows = [
        row("grace200", method="grace", n_edits=200, **kw, overrides=GRACE_0P),
        row("elder400", n_edits=400, **kw, overrides=STUDY),
    ]
    write_runs(tmp_path, rows)
    write_curve(tmp_path, "grace200", [1.0, 1.0])
    write_curve(tmp_path, "elder400", [1.0, 0.9, 0.9, 0.8])
    fig2 = all_figures(load_runs(tmp_path), tmp_path)[0]
    assert fig2.runs == ["elder400"] and "pre-#26 default): 0" in fig2.note


def test_figure_3_draws_the_stream_where_most_values_of_l_have_a_curve(tmp_path):
    kw = {"model": "smollm2_135m", "data": "counterfact"}
    rows = [
        row("l4_200", n_edits=200, **kw, overrides=f"method.L=4 method.eps=8 {STUDY}"),
        row("l6_200", n_edits=200, **kw, overrides=STUDY),
        row("l8_200", n_edits=200, **kw, overrides=f"method.L=8 method.eps=16 {STUDY}"),
        row("l6_4000", n_edits=4000, **kw, overrides=STUDY),  # the default L alone, 4000 edits
    ]
    write_runs(tmp_path, rows)
    for run_id in ("l4_200", "l6_200", "l8_200"):
        write_curve(tmp_path, run_id, [0.9, 0.8])
    write_curve(tmp_path, "l6_4000", [0.9] * 40)
    fig3 = all_figures(load_runs(tmp_path), tmp_path)[2]
    assert sorted(fig3.runs) == ["l4_200", "l6_200", "l8_200"]
    assert "stream of 200 edits (the paper's: 4000)" in fig3.note
    assert [m.split(f"eval.every=100 {STUDY}")[1] for m in fig3.missing] == [
        " method.L=4 method.eps=8",
        " method.L=8 method.eps=16",
    ]  # the default L has its 4000-edit curve


def test_the_command_line_builds_everything_from_synthetic_results(tmp_path):
    results = curve_results(tmp_path / "results")
    codes = [
        {"group": f"edit #{g}", "kind": kind, "code": [float((g + i) % 2) for i in range(8)]}
        for g in range(1, 6)
        for kind in ("edit", "rephrase")
    ]
    codes += [{"group": "task input (NQ)", "kind": "task", "code": [1.0] * 8}] * 6
    (results / "figures" / "fig4_codes.json").parent.mkdir(parents=True, exist_ok=True)
    (results / "figures" / "fig4_codes.json").write_text(
        json.dumps({"run_id": "elder0", "points": codes})
    )
    cmd = [sys.executable, "-m", "experiments.tables", "--results", str(results)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    for stem in ("table1", "table2", "table3", "table4", "table5", "table7_10"):
        assert (results / "tables" / f"{stem}.md").read_text().startswith("# Table")
        assert r"\begin{tabular}" in (results / "tables" / f"{stem}.tex").read_text()
    for fig in ("fig2_scalability", "fig3_layers", "fig4_codes_tsne"):
        assert (results / "figures" / f"{fig}.png").read_bytes()[:4] == PNG
    index = (results / "tables" / "README.md").read_text()
    assert "make tables" in index and "table7_10.md" in index


def test_a_resumed_run_is_matched_by_the_config_of_its_run_folder(tmp_path):
    resumed = with_config(tmp_path, "resumed", "method:\n  lr: 0.001\n  k: 2\n")
    resumed["overrides"] = f"resume={tmp_path / 'runs' / 'resumed'}"
    table = table1(write_runs(tmp_path, [resumed]))
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1) == MISSING  # lr=1e-3 is a variant


def _routing_report(run_dir: Path, same_as_stored: float) -> None:
    deferral = {"deferred": 0.0, "hamming_to_nearest": {"min": 0, "median": 4, "max": 6}}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "routing.json").write_text(
        json.dumps(
            {
                "n": 200,
                "labels": 132,
                "distinct_stored_codes": 198,
                "stored_preset_match": 0.045,
                "same_as_stored": same_as_stored,
                "hamming_to_stored_mean": 9.29,
                "preset_match": 0.0,
                "guided_loss_median": 40.5,
                "deferral": {kind: deferral for kind in ("edit", "rephrase", "locality")},
            }
        )
    )


def test_the_routing_table_has_a_row_per_elder_run_with_a_routing_report(tmp_path):
    rows = [
        row("with", data="counterfact", overrides="method.lam=1"),
        row("without", data="counterfact"),
        row("grace", method="grace", data="counterfact"),
    ]
    _routing_report(tmp_path / "runs" / "with", same_as_stored=0.025)
    _routing_report(tmp_path / "runs" / "grace", same_as_stored=1.0)
    table = routing_table(write_runs(tmp_path, rows))
    (block,) = table.blocks
    assert block.label == "CounterFact · SmolLM2-135M"
    (line,) = block.rows
    assert line[:4] == ["with", "lam=1.0", "200 (132)", "198"]
    assert line[5] == Num(2.5, digits=1)
    assert table.runs == {"CounterFact · SmolLM2-135M": ["with"]}


def test_a_route_memory_routing_report_fills_the_memory_routing_table_only(tmp_path):
    part = {"share": 0.5, "generalization": 0.25}
    report = {
        "n": 4,
        "own": 0.75,
        "same_target": 1.0,
        "in_reach": 1.0,
        "generalization": 0.5,
        "routed": {"own, in reach": part, "deferred": {"share": 0.0, "generalization": 0.0}},
    }
    (tmp_path / "runs" / "memory").mkdir(parents=True)
    (tmp_path / "runs" / "memory" / "routing.json").write_text(json.dumps(report))
    runs = write_runs(tmp_path, [row("memory")])
    assert routing_table(runs).blocks == []
    (block,) = memory_routing_table(runs).blocks
    (line,) = block.rows
    assert line[0] == "memory" and line[3] == Num(75.0, digits=1)
    assert line[7:] == ["50.0 / 25.0", "–", "0.0 / 0.0", "–", "–"]  # older reports: no subject


def with_config(results: Path, run_id: str, config: str) -> dict[str, object]:
    """A row whose run folder has ``config`` as its config.yaml (one made by older code)."""
    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config)
    return row(run_id)


def test_a_run_made_before_elders_reference_defaults_fills_the_legacy_row_only(tmp_path):
    old_config = "method:\n  _target_: elder.ELDER\n  lr: 0.0001\n  reset_optimizer: false\n"
    table = table1(write_runs(tmp_path, [with_config(tmp_path, "old", old_config)]))
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1) == MISSING
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER (pre-#23 defaults)", 1) == Num(50.0)


def test_a_run_with_the_reference_defaults_fills_the_elder_row_only(tmp_path):
    new_config = "method:\n  _target_: elder.ELDER\n  query: fc_input\n  optimizer: per_batch\n"
    table = table1(write_runs(tmp_path, [with_config(tmp_path, "new", new_config)]))
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1) == Num(50.0)
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER (pre-#23 defaults)", 1) == MISSING


def test_the_options_table_switches_one_option_at_a_time_from_the_pre_23_defaults(tmp_path):
    pre = (
        "method.query=residual model.layers.elder.query_block=20 method.lora_init=peft "
        "method.optimizer=stream method.label=target"
    )
    init = pre.replace(" method.lora_init=peft", "")
    rows = [
        row("pre", n_edits=40, overrides=pre, reliability=0.1),
        row("init", n_edits=40, overrides=init, reliability=0.2),
        row("today", n_edits=40, reliability=0.3),
    ]
    table = options_table(write_runs(tmp_path, rows))
    assert cell(table, "", "pre-#23 defaults", 1) == Num(10.0)
    assert cell(table, "", "pre-#23, lora_init = reference", 1) == Num(20.0)
    assert cell(table, "", "all four = reference (today's defaults)", 1) == Num(30.0)
    assert cell(table, "", "pre-#23, query = reference", 1) == MISSING


def test_a_run_is_matched_on_resolved_values_not_on_how_they_were_spelled(tmp_path):
    # model.layers.elder.query_block resolves into method.query_block: same run, two spellings.
    legacy = " ".join(f"{k}={v}" for k, v in ELDER_STUDY_BASE.items() if k.startswith("method."))
    rows = [row("direct", overrides=f"{legacy} method.query_block=20 method.lr=1e-4")]
    table = table1(write_runs(tmp_path, rows))
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER (pre-#23 defaults)", 1) == Num(50.0)


def test_a_residual_run_from_todays_query_block_is_not_a_pre_23_run(tmp_path):
    legacy = " ".join(f"{k}={v}" for k, v in ELDER_STUDY_BASE.items() if k.startswith("method."))
    table = table1(write_runs(tmp_path, [row("block19", overrides=legacy)]))
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER (pre-#23 defaults)", 1) == MISSING
    assert cell(table, "ZsRE · SmolLM2-135M", "ELDER", 1) == MISSING


def test_a_row_without_a_run_folder_is_left_out_and_said_so(tmp_path, capsys):
    runs = write_runs(tmp_path, [row("kept"), row("gone")])
    (tmp_path / "runs" / "gone" / "config.yaml").unlink()
    runs = load_runs(tmp_path)
    assert list(runs.frame["run_id"]) == ["kept"]
    assert "'gone'" in capsys.readouterr().err


def test_a_cells_config_is_what_hydra_composes_for_its_command():
    spec = Spec.of("elder", "smollm2_135m", "zsre", overrides=ELDER_STUDY_BASE)
    full = deciding(compose([*spec.args(), "seed=3"]))
    assert spec.config(seed=3) == full
    assert full["method.query_block"] == full["method.first_layer"]  # the interpolation resolved
    assert full["method.allocation_seed"] == 3


def test_the_ablation_table_takes_only_runs_on_its_inputs_per_task(tmp_path):
    base = {"n_edits": 200, "retention": 0.5, "overrides": "eval=full"}
    rows = [row("on20", **base), row("on100", **base, reliability=0.9)]
    write_runs(tmp_path, rows)
    for run_id, n in [("on20", 20), ("on100", 100)]:
        (tmp_path / "runs" / run_id / "retention.json").write_text(
            json.dumps({"prompt_version": PROMPT_VERSION, "n_per_task": n})
        )
    table = ablation_table(load_runs(tmp_path))
    assert cell(table, "", "faithful", 1) == Num(50.0)


def _bench_record(bench: Path, shape: str, device: str, s_per_edit: float) -> None:
    bench.mkdir(parents=True, exist_ok=True)
    row = {"name": "elder", "s_per_edit": s_per_edit, "extra_params": 1, "inference": 1.02}
    record = {"model": shape, "n_edits": 20, "device": device, "machine": "NVIDIA H200"}
    record |= {
        "torch": "2.9",
        "date": "2026-12-02 18:00 UTC",
        "speedups": {"ELDER CUDA graph": 9.0},
    }
    (bench / f"{shape}_20.json").write_text(
        json.dumps({**record, "rows": [{**row, "peak_gib": 30.0}]})
    )


def test_table3_on_a_gpu_is_filled_from_gpu_bench_records_only(tmp_path):
    _bench_record(tmp_path / "bench", "gpt2_xl_random", "cuda", 0.08)
    _bench_record(tmp_path / "bench", "llama2_7b_random", "cpu", 5.0)  # not a GPU figure
    table = gpu_table(write_runs(tmp_path, [row("x")]))
    (line,) = table.blocks[0].rows
    assert line[:4] == ["elder", Num(0.08, digits=3), Num(1.02, digits=3), Num(30.0, digits=1)]
    assert line[4] == Num(1.82)  # the paper's A40 s/edit
    assert line[5] == MISSING
    assert list(table.missing) == ["GPU bench · llama2_7b_random"]
    assert any("NVIDIA H200" in note and "ELDER CUDA graph 9.00x" in note for note in table.notes)
