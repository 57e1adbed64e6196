"""Fig. 4's data: the allocation codes of edits, their rephrases and NQ task inputs."""

import pytest

from experiments.elder_analysis.allocation_codes import codes
from experiments.runner import run
from tests.conftest import compose_cfg


def test_codes_of_five_edit_groups_and_twenty_task_inputs_from_a_saved_run(tmp_path):
    row = run(
        compose_cfg(
            "model=tiny_llama",
            f"results_dir={tmp_path}",
            "data.n_edits=8",
            "method.iterations=2",
            "logger=none",
            "save=true",
        )
    )
    result = codes(tmp_path / "runs" / row["run_id"])
    points = result["points"]
    kinds = [p["kind"] for p in points]
    assert kinds.count("edit") == kinds.count("rephrase") == 5 and kinds.count("task") == 20
    L, N = result["L"], result["N"]
    for p in points:
        assert len(p["code"]) == L * N and sum(p["code"]) == 2 * L  # k = 2 LoRAs per layer
        assert p["deferred"] == (p["hamming_to_nearest_edit"] >= 12)  # ε = 12


def test_a_run_without_routers_is_refused(tmp_path):
    row = run(
        compose_cfg(
            "model=tiny_llama",
            f"results_dir={tmp_path}",
            "data.n_edits=4",
            "method.iterations=1",
            "method.route=memory",
            "logger=none",
            "save=true",
        )
    )
    with pytest.raises(ValueError, match="route=memory: it has no routers"):
        codes(tmp_path / "runs" / row["run_id"])
