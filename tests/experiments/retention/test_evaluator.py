"""Agreement, the base-output cache, and retention in an end-to-end run (tiny models)."""

import csv

import pytest
import torch

from elder import ELDER
from elder.editor import Editor
from experiments.retention import RetentionEvaluator, prompts
from experiments.retention.generate import base_generate, generate_all
from experiments.runner import run
from tests.conftest import compose_cfg, tiny

FAST = {"tasks": ["rte", "sst2"], "n_per_task": 2, "batch_size": 2, "max_new_tokens_cap": 3}


class Unedited(Editor):
    """The base editor: generation through Editor.generate, no edit."""

    name = "unedited"

    def edit(self, batch):
        return {}

    def extra_params(self):
        return 0


class Counting:
    """Wraps a generate function and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


@pytest.mark.parametrize("max_padding", [None, 0.5])
def test_left_padded_batches_give_each_prompt_its_own_greedy_output(max_padding):
    model = tiny("llama")
    eos = model.hf.generation_config.eos_token_id
    texts = ["The capital of France is", "Hi", "One two three four five six"]
    batched = generate_all(
        base_generate(model), model, texts, 4, None, batch_size=3, max_padding=max_padding
    )
    alone = [generate_all(base_generate(model), model, [t], 4, None, 1)[0] for t in texts]
    assert [g.tokens for g in batched] == [g.tokens for g in alone]
    assert model.tokenizer.padding_side == "right"  # shared state untouched
    assert model.hf.generation_config.eos_token_id == eos


def test_agreement_is_one_when_the_edited_model_is_the_unedited_one(tmp_path):
    model = tiny("gpt2")
    evaluator = RetentionEvaluator(model, cache_dir=str(tmp_path), **FAST)
    evaluator.prepare()
    result = evaluator.evaluate(Unedited(model), tmp_path)
    assert result["agreement"] == 1.0
    assert result["retention"] == result["base_retention"]
    assert (tmp_path / "retention.jsonl").read_text().count('"agree": true') == 4


def test_elder_without_edits_defers_every_task_input_and_agrees(tmp_path):
    model = tiny("llama")
    evaluator = RetentionEvaluator(model, cache_dir=None, **FAST)
    layers = model.layers["elder"]
    editor = ELDER(model, layer_pattern=layers["pattern"], first_layer=layers["first"])
    evaluator.prepare()
    result = evaluator.evaluate(editor, tmp_path)
    assert result["agreement"] == 1.0 and result["deferred_tasks"] == 1.0
    assert result["agreement_rte"] == result["deferred_rte"] == 1.0


def test_base_outputs_are_cached_and_recomputed_when_the_prompts_change(tmp_path, monkeypatch):
    from experiments.retention import evaluator as E

    model = tiny("llama")
    counting = Counting(base_generate(model))
    monkeypatch.setattr(E, "base_generate", lambda m: counting)
    first = RetentionEvaluator(model, cache_dir=str(tmp_path), **FAST)
    first.prepare()
    calls = counting.calls
    assert calls > 0 and len(list(tmp_path.rglob("*.json"))) == 2
    second = RetentionEvaluator(model, cache_dir=str(tmp_path), **FAST)
    second.prepare()
    assert counting.calls == calls  # reused
    assert [g.tokens for g in second.base["rte"]] == [g.tokens for g in first.base["rte"]]
    monkeypatch.setattr(prompts, "PROMPT_VERSION", "changed")
    RetentionEvaluator(model, cache_dir=str(tmp_path), **FAST).prepare()
    assert counting.calls == 2 * calls  # invalidated


def test_a_negative_max_padding_is_refused_before_any_generation():
    with pytest.raises(ValueError, match="max_padding must be >= 0"):
        RetentionEvaluator(tiny("llama"), cache_dir=None, **{**FAST, "max_padding": -0.1})


def test_subsample_is_seeded_and_n_per_task_bounds_it():
    model = tiny("llama")
    kw = {**FAST, "cache_dir": None}
    a = RetentionEvaluator(model, sample_seed=1, **kw)
    b = RetentionEvaluator(model, sample_seed=1, **kw)
    c = RetentionEvaluator(model, sample_seed=2, **kw)
    assert a.ids == b.ids != c.ids and len(a.ids["rte"]) == 2


def test_eval_full_composes_and_eval_edit_has_no_retention():
    assert compose_cfg("eval=full").eval.retention.n_per_task is None
    assert "retention" not in compose_cfg().eval


@pytest.mark.parametrize("arch", ["gpt2"])
def test_end_to_end_run_writes_the_retention_columns(tmp_path, arch):
    cfg = compose_cfg(
        f"model=tiny_{arch}",
        "eval=full",
        "eval.retention.n_per_task=2",
        "eval.retention.max_new_tokens_cap=2",
        "eval.retention.batch_size=4",
        "data.n_edits=4",
        "method.iterations=2",
        "logger=none",
        f"results_dir={tmp_path}",
    )
    torch.manual_seed(0)
    row = run(cfg)
    with open(tmp_path / "runs.csv") as f:
        header = next(csv.reader(f))
    tasks = list(cfg.eval.retention.tasks)
    for column in ["retention", "agreement"] + [
        f"{p}_{t}" for t in tasks for p in ("retention", "agreement")
    ]:
        assert column in header
    assert 0.0 <= row["retention"] <= 1.0
    run_dir = tmp_path / "runs" / row["run_id"]
    assert (run_dir / "retention.jsonl").stat().st_size > 0
    assert list((tmp_path / "cache" / "retention").rglob("*.json"))
