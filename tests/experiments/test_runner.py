"""The runner end to end on tiny models, and its refusals before any editing."""

import json

import pytest

from experiments.results import CORE_COLUMNS, read_rows
from experiments.runner import run
from tests.conftest import compose_cfg

FAST = ("data.n_edits=4", "method.iterations=2", "logger=none", "eval.batch_size=8")


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_run_writes_a_csv_row_and_a_run_folder(model, tmp_path):
    row = run(compose_cfg(f"model={model}", f"results_dir={tmp_path}", *FAST))
    rows = read_rows(tmp_path / "runs.csv")
    assert len(rows) == 1 and rows[0]["run_id"] == row["run_id"]
    assert set(CORE_COLUMNS) <= set(rows[0])
    assert rows[0]["method"] == "elder" and rows[0]["model"] == model
    run_dir = tmp_path / "runs" / row["run_id"]
    assert json.loads((run_dir / "metrics.json").read_text())["n_edits"] == 4
    assert (run_dir / "config.yaml").exists()
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 4  # edit, rephrase and locality prompt of every edit
    for key in ("deferred_edit", "deferred_rephrase", "deferred_locality", "base_reliability"):
        assert key in rows[0]


def test_a_second_run_appends_a_row(tmp_path):
    for seed in (0, 1):
        run(compose_cfg("model=tiny_llama", f"results_dir={tmp_path}", f"seed={seed}", *FAST))
    assert [r["seed"] for r in read_rows(tmp_path / "runs.csv")] == ["0", "1"]


def test_wandb_offline_logging_writes_a_local_run(tmp_path):
    row = run(
        compose_cfg(
            "model=tiny_llama",
            f"results_dir={tmp_path}",
            *FAST[:2],
            "logger=wandb",
            "logger.mode=offline",
        )
    )
    assert list((tmp_path / "runs" / row["run_id"] / "wandb").glob("offline-run-*"))


def test_a_missing_data_file_names_the_file_and_where_it_looked(tmp_path):
    cfg = compose_cfg(
        "model=tiny_llama", f"results_dir={tmp_path}", "data.path=nowhere.json", *FAST
    )
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json.*looked for"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_layer_the_model_lacks_is_refused_with_the_candidates(tmp_path):
    cfg = compose_cfg(
        "model=tiny_llama",
        f"results_dir={tmp_path}",
        "model.layers.elder.pattern='model.layers.{}.mlp.fc_out'",
        *FAST,
    )
    with pytest.raises(
        ValueError, match=r"fc_out.*candidates under .model.layers.\d.mlp.: .*down_proj"
    ):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_stream_the_editor_cannot_take_is_refused_before_any_edit(tmp_path):
    cfg = compose_cfg(
        "model=tiny_llama",
        f"results_dir={tmp_path}",
        "data.n_edits=8",
        "logger=none",
        "method.L=1",
        "method.N=2",
        "method.k=1",
        "method.eps=1",
    )
    with pytest.raises(ValueError, match=r"8 distinct labels.*C\(2,1\)\^1 = 2 distinct"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_an_empty_target_is_refused_with_its_record(tmp_path):
    data = [
        {
            "subject": "s",
            "src": "Q?",
            "rephrase": "Q again?",
            "alt": "  ",
            "loc": "nq question: x",
            "loc_ans": "y",
        }
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    cfg = compose_cfg(
        "model=tiny_llama",
        f"results_dir={tmp_path}",
        f"data.path={path}",
        "data.n_edits=1",
        "logger=none",
    )
    with pytest.raises(ValueError, match=r"record 0: field 'alt' is empty"):
        run(cfg)
    assert not (tmp_path / "runs").exists()
