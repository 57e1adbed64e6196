"""Where a model and its tokenizer come from."""

import os
import subprocess
import sys

import pytest
import torch

from elder.models import GGUF_TOKENIZER, gguf_tokenizer, load_model
from tests.conftest import ROOT, tiny


def test_a_saved_tokenizer_folder_replaces_the_gguf_file(tmp_path, monkeypatch):
    gguf_tokenizer.cache_clear()
    packaged = gguf_tokenizer(GGUF_TOKENIZER)
    packaged.save_pretrained(str(tmp_path))
    gguf_tokenizer.cache_clear()
    monkeypatch.setenv("ELDER_TOKENIZER_DIR", str(tmp_path))
    monkeypatch.setattr("elder.models.packaged_file", lambda path: 1 / 0)  # never read
    try:
        saved = gguf_tokenizer(GGUF_TOKENIZER)
    finally:
        gguf_tokenizer.cache_clear()
    assert (
        saved("Paris is the capital of").input_ids == packaged("Paris is the capital of").input_ids
    )
    assert saved.pad_token == packaged.pad_token and saved.padding_side == "right"


def test_a_hub_model_neither_here_nor_downloadable_fails_at_once_naming_how_to_provide_it(
    tmp_path, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # empty
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(FileNotFoundError) as err:
        load_model("gpt2_xl", "hub", "gpt2-xl", "transformer.h")
    message = str(err.value)
    assert "'gpt2-xl' is not in the local Hugging Face cache" in message
    assert "model.path=" in message and "\n" not in message


def test_a_hub_model_in_a_local_folder_loads_without_the_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    model = tiny("gpt2")
    model.hf.save_pretrained(tmp_path / "gpt2")
    model.tokenizer.save_pretrained(tmp_path / "gpt2")
    loaded = load_model("tiny_gpt2", "hub", str(tmp_path / "gpt2"), "transformer.h")
    ids = model.tokenizer("Paris is", return_tensors="pt").input_ids
    assert torch.equal(loaded.hf(ids).logits, model.hf(ids).logits)


def test_run_py_says_in_one_line_that_a_hub_model_cannot_be_had(tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "run.py", "model=gpt2_xl", "logger=none", "data.n_edits=4"],
        cwd=ROOT, env={**env, "ELDER_TRACEBACK": ""}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: model 'gpt2-xl' is not in the local Hugging Face cache")
