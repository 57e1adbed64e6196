"""The ELDER+ ablation: its variants follow the preset, and its table picks each variant's run."""

from experiments.elder_analysis.ablation import OPTIONS, PRESET, run_argv, run_name, variants
from experiments.tables.ablation_table import ablation_table
from experiments.tables.render import MISSING, Num
from tests.experiments.test_tables import cell, row, write_runs


def test_each_option_alone_and_the_preset_without_it_differ_from_their_base_at_its_keys():
    found = variants()
    assert found["faithful"] == {} and found["preset"] == PRESET
    for option, keys in OPTIONS.items():
        assert set(found[f"+{option}"]) == set(keys)
        without = found[f"preset -{option}"]
        assert {k for k in PRESET if without[k] != PRESET[k]} <= set(keys)
        assert without != PRESET
    assert len({run_name(v, 200) for v in found}) == len(found)


def test_the_table_fills_todays_preset_row_from_a_preset_run_and_leaves_the_rest_missing(
    tmp_path,
):
    on_20 = "eval=full eval.retention.n_per_task=20"  # as the ablation runs its variants
    rows = [
        row(
            "p",
            n_edits=200,
            overrides=f"+preset=elder_plus {on_20}",
            reliability=0.9,
            retention=0.5,
        ),
        row("f", n_edits=200, overrides=on_20, reliability=0.1, retention=0.5),
    ]
    table = ablation_table(write_runs(tmp_path, rows))
    assert cell(table, "", "preset +protect -rehearse +N64", 1) == Num(90.0)  # today's preset
    assert cell(table, "", "preset +protect -rehearse", 1) == MISSING  # the preset with N=16
    assert cell(table, "", "faithful", 1) == Num(10.0)
    assert cell(table, "", "preset", 1) == MISSING  # ELDER+ v1, which rehearses


def test_a_variant_runs_fresh_then_resumes_once_its_folder_exists_then_is_skipped(tmp_path):
    folder = tmp_path / "runs" / run_name("preset", 200)
    fresh = run_argv("preset", 200, 20, str(tmp_path))
    assert f"run_name={folder.name}" in fresh
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("{}")  # killed before its first checkpoint
    assert run_argv("preset", 200, 20, str(tmp_path)) == [f"resume={folder}"]
    (folder / "metrics.json").write_text("{}")
    assert run_argv("preset", 200, 20, str(tmp_path)) is None
