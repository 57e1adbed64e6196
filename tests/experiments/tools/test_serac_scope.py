"""The SERAC scope tool trains the classifier as a run would and counts what it puts in scope."""

from experiments.tools.serac_scope import scope_rates

TINY = [
    "model=tiny_llama",
    "data.n_edits=8",
    "method.classifier_steps=3",
    "method.train_size=4",
]


def test_an_unreachable_threshold_puts_nothing_in_scope():
    rates = scope_rates([*TINY, "method.scale=1e6"])  # s = 1 only at distance 0
    assert set(rates) == {"rephrase in scope", "rephrase -> own edit", "locality in scope"}
    assert rates["locality in scope"] == 0.0 and rates["rephrase in scope"] == 0.0


def test_a_huge_radius_puts_everything_in_scope():
    rates = scope_rates([*TINY, "method.scale=1e-9"])  # s ~ 1 at any distance
    assert rates["locality in scope"] == 1.0 and rates["rephrase in scope"] == 1.0
