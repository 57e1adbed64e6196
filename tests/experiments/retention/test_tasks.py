"""Each loader parses its file; the counts are the data README's."""

import pytest

from experiments.retention.prompts import SPECS, render
from experiments.retention.tasks import TASKS, load_task
from tests.conftest import real_data

COUNTS = {
    "gsm8k": 1319,
    "rte": 2489,
    "nq": 3610,
    "boolq": 3267,
    "mutual": 886,
    "samsum": 818,
    "conll03": 3250,  # validation sentences, -DOCSTART- lines dropped
    "sst2": 872,
}


@real_data
@pytest.mark.parametrize("task", sorted(COUNTS))
def test_loader_reads_every_record_of_its_file(task):
    records = load_task(task)
    assert len(records) == COUNTS[task]
    assert all(records)  # no empty record


@real_data
def test_fields_are_parsed():
    assert load_task("gsm8k")[0]["answer"] == "18"
    assert {r["label"] for r in load_task("rte")} == {"entailment", "not_entailment"}
    assert {r["label"] for r in load_task("sst2")} == {0, 1}
    assert {r["answer"] for r in load_task("boolq")} == {True, False}
    first = load_task("mutual")[0]
    assert first["id"] == "dev_1" and len(first["options"]) == 4 and first["answer"] == "B"
    sentence = load_task("conll03")[0]
    assert sentence["tokens"][2] == "LEICESTERSHIRE" and sentence["tags"][2] == "B-ORG"
    assert "\r" not in load_task("samsum")[0]["dialogue"]


def test_every_task_renders_its_template_with_the_record_fields():
    for task in [*TASKS, "gsm8k_gold"]:
        (prompt, *_) = render(task, load_task(task)[:1])
        tail = SPECS[task].template.rsplit("}", 1)[-1]
        assert prompt.record == 0 and prompt.text.endswith(tail)


@real_data
def test_conll03_asks_one_prompt_per_entity_type():
    prompts = render("conll03", load_task("conll03")[:2])
    assert [p.kind for p in prompts] == ["PER", "LOC", "ORG", "MISC"] * 2
    assert "Text: CRICKET - LEICESTERSHIRE TAKE OVER" in prompts[0].text
