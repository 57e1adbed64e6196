"""The runner end to end on tiny models, and its refusals before any editing."""

import json

import pytest

from experiments.results import CORE_COLUMNS, PREDICTIONS, read_jsonl, read_rows
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
    lines = read_jsonl(run_dir / PREDICTIONS)
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


def refused(tmp_path, *overrides: str, error: type[Exception], match: str) -> None:
    """A tiny_llama run with ``overrides`` fails with ``error`` before it writes a run folder."""
    cfg = compose_cfg("model=tiny_llama", f"results_dir={tmp_path}", *overrides)
    with pytest.raises(error, match=match):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_file_names_the_file_and_where_it_looked(tmp_path):
    refused(
        tmp_path, "data.path=nowhere.json", *FAST,
        error=FileNotFoundError, match=r"nowhere\.json.*looked for",
    )  # fmt: skip


def test_a_layer_the_model_lacks_is_refused_with_the_candidates(tmp_path):
    refused(
        tmp_path, "model.layers.elder.pattern='model.layers.{}.mlp.fc_out'", *FAST,
        error=ValueError, match=r"fc_out.*candidates under .model.layers.\d.mlp.: .*down_proj",
    )  # fmt: skip


def test_a_stream_the_editor_cannot_take_is_refused_before_any_edit(tmp_path):
    options = ["data.n_edits=8", "logger=none", "method.L=1", "method.N=2", "method.k=1"]
    refused(
        tmp_path, *options, "method.eps=1",
        error=ValueError, match=r"8 distinct labels.*C\(2,1\)\^1 = 2 distinct",
    )  # fmt: skip


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
    refused(
        tmp_path, f"data.path={path}", "data.n_edits=1", "logger=none",
        error=ValueError, match=r"record 0: field 'alt' is empty",
    )  # fmt: skip
