"""Bad input stops a run before any work, with one clear message naming what is wrong."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.data import MAX_FIELD_CHARS, load_stream
from experiments.runner import run
from tests.conftest import ROOT, compose_cfg

GOOD = {
    "subject": "Watts Humphrey",
    "src": "What university did Watts Humphrey attend?",
    "alt": "University of Michigan",
    "rephrase": "What university did Watts Humphrey take part in?",
    "loc": "nq question: who played desmond doss father in hacksaw ridge",
    "loc_ans": "Hugo Weaving",
}


def _zsre_file(tmp_path: Path, records) -> str:
    file = tmp_path / "zsre.json"
    file.write_text(json.dumps(records))
    return str(file)


def _run(tmp_path, *overrides):
    cfg = compose_cfg(
        "model=tiny_llama", "logger=none", "data.n_edits=4", f"results_dir={tmp_path}", *overrides
    )
    return run(cfg, overrides)


# -- data records (fuzz): every malformed record is a clean ValueError naming file and index --

BAD_VALUES = {
    "missing": ...,
    "none": None,
    "int": 7,
    "float": 1.5,
    "bool": True,
    "list": ["a", "b"],
    "dict": {"str": "x"},
    "empty": "",
    "blank": "  \n\t",
    "huge": "x" * (MAX_FIELD_CHARS + 1),
}


@pytest.mark.parametrize("field", sorted(GOOD))
@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_malformed_field_names_file_record_and_field(tmp_path, field, kind):
    bad = dict(GOOD)
    if BAD_VALUES[kind] is ...:
        del bad[field]
    else:
        bad[field] = BAD_VALUES[kind]
    path = _zsre_file(tmp_path, [GOOD, bad, GOOD])
    with pytest.raises(ValueError, match=rf"zsre.json: record 1: field '{field}' is "):
        load_stream("zsre", 3, 4, path)


@pytest.mark.parametrize("record", [["a list"], "a string", 3, None])
def test_a_record_that_is_not_an_object_is_named(tmp_path, record):
    path = _zsre_file(tmp_path, [GOOD, record])
    with pytest.raises(ValueError, match="record 1 is a .*, not a JSON object"):
        load_stream("zsre", 2, 4, path)


def test_a_file_that_is_not_a_list_of_records(tmp_path):
    with pytest.raises(ValueError, match="must hold a JSON list"):
        load_stream("zsre", 1, 4, _zsre_file(tmp_path, GOOD))


def test_a_file_that_is_not_json(tmp_path):
    (tmp_path / "zsre.json").write_text('[{"src": "unterminated')
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_stream("zsre", 1, 4, str(tmp_path / "zsre.json"))


def test_a_missing_file_names_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found: looked for"):
        load_stream("zsre", 1, 4, str(tmp_path / "nope.json"))


def test_counterfact_case_id_of_the_wrong_type(tmp_path):
    record = {
        "case_id": "12",
        "prompt": "p",
        "target_new": "t",
        "subject": "s",
        "rephrase_prompt": "r",
        "locality_prompt": "l",
        "locality_ground_truth": "g",
    }
    file = tmp_path / "cf.json"
    file.write_text(json.dumps([record]))
    with pytest.raises(ValueError, match=r"cf.json: record 0: field 'case_id' must be an integer"):
        load_stream("counterfact", 1, 4, [str(file)])


def test_more_edits_than_the_data_has(tmp_path):
    with pytest.raises(ValueError, match="n_edits=5 but .* has only 2 usable records"):
        load_stream("zsre", 5, 4, _zsre_file(tmp_path, [GOOD, GOOD]))


# -- the model, the method and run options (in-process runs on tiny_llama) -------------------


def test_prompt_plus_target_longer_than_the_context(tmp_path):
    long = dict(GOOD, rephrase="Which university? " * 60)  # ~240 tokens, context 128
    path = _zsre_file(tmp_path, [GOOD, long, GOOD, GOOD])
    too_long = r"rephrase probe 1 \(case 1\).* over tiny_llama's context"
    with pytest.raises(ValueError, match=too_long):
        _run(tmp_path, f"data.path={path}")


def test_blocks_beyond_the_model(tmp_path):
    with pytest.raises(ValueError, match=r"layers 4..9 do not exist: tiny_llama has 8 blocks"):
        _run(tmp_path, "method.first_layer=4", "method.query_block=4")


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.k=5", r"k must be in \[1, N=4\], got k=5"),
        ("method.eps=25", r"eps must be in \[0, L\*N=24\], got 25"),
        ("method.eps=-1", r"eps must be in \[0, L\*N=24\], got -1"),
        ("checkpoint.every=-1", "checkpoint.every must be an integer >= 0"),
        ("eval.batch_size=0", "eval.batch_size must be an integer >= 1"),
        ("data.n_edits=5000", "n_edits=5000 but .* has only"),
    ],
)
def test_impossible_options(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        _run(tmp_path, override)


def test_run_py_prints_one_line_and_exits_nonzero():
    env = {**os.environ, "ELDER_TRACEBACK": ""}
    done = subprocess.run(
        [sys.executable, "run.py", "logger=none", "data.path=/nonexistent/zsre.json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: data file")


# -- no remote code unless asked -------------------------------------------------------------


@pytest.mark.parametrize("asked", [False, True])
def test_hub_models_run_remote_code_only_when_the_config_asks(monkeypatch, asked):
    import transformers

    from elder.models import load_model
    from tests.conftest import tiny

    seen = []
    hf, tok = tiny("llama").hf, tiny("llama").tokenizer

    def model(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return hf

    def tokenizer(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return tok

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr("elder.models.hub_local_only", lambda path: False)  # as if online
    extra = {"trust_remote_code": True} if asked else {}
    load_model("x", "hub", "someone/model", "model.layers", device="cpu", **extra)
    assert seen == [asked, asked]


def test_no_model_config_asks_for_remote_code():
    for file in (ROOT / "conf" / "model").glob("*.yaml"):
        assert compose_cfg(f"model={file.stem}").model.get("trust_remote_code") is False, file
