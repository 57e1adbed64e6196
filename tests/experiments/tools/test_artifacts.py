"""Bulky run outputs: a manifest in git, an archive to publish, a checked restore."""

import io
import json
import tarfile

import pytest

from experiments.results import LEGACY_PREDICTIONS, PREDICTIONS, read_jsonl
from experiments.tools.artifacts import MANIFEST, compact, pack, read_manifest, restore

FILES = {"runs/a/edited/state.safetensors": b"\x00weights", "runs/a/base_eval.json": b"{}"}


def _results(tmp_path):
    results = tmp_path / "results"
    for path, data in FILES.items():
        (results / path).parent.mkdir(parents=True, exist_ok=True)
        (results / path).write_bytes(data)
    (results / "runs" / "a" / "metrics.json").write_text("{}")  # small: stays in git
    return results


def test_a_packed_archive_restores_every_bulky_file_byte_for_byte(tmp_path):
    results = _results(tmp_path)
    assert pack(results, tmp_path / "artifacts.tar.gz") == 2
    assert set(read_manifest(results)) == set(FILES)
    for path in FILES:
        (results / path).unlink()
    assert restore(results, str(tmp_path / "artifacts.tar.gz")) == 2
    assert {p: (results / p).read_bytes() for p in FILES} == FILES


def test_a_file_that_differs_from_the_manifest_is_refused(tmp_path):
    results = _results(tmp_path)
    pack(results, tmp_path / "artifacts.tar.gz")
    (results / "runs/a/base_eval.json").unlink()
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tar:
        info = tarfile.TarInfo("runs/a/base_eval.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    with pytest.raises(ValueError, match=f"sha256 differs from {MANIFEST}"):
        restore(results, str(forged))
    assert not (results / "runs/a/base_eval.json").exists()


def test_compact_gzips_old_predictions_with_the_same_rows(tmp_path):
    run = tmp_path / "results" / "runs" / "old"
    run.mkdir(parents=True)
    rows = [{"split": "edit", "exact": True}, {"split": "rephrase", "exact": False}]
    (run / LEGACY_PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compact(tmp_path / "results") == 1
    assert read_jsonl(run / PREDICTIONS) == rows and not (run / LEGACY_PREDICTIONS).exists()
