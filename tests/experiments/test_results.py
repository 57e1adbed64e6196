"""runs.csv: one schema for every method, widened (never corrupted) by new columns."""

from experiments.results import append_row, read_rows


def test_a_row_with_new_columns_widens_the_header_and_keeps_old_rows(tmp_path):
    csv_path = tmp_path / "runs.csv"
    append_row(csv_path, {"run_id": "a", "reliability": 0.5})
    append_row(csv_path, {"run_id": "b", "reliability": 0.7, "retention": 0.3})
    rows = read_rows(csv_path)
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert rows[0]["retention"] == "" and rows[1]["retention"] == "0.3"
