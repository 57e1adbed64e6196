"""What every registered editor promises, whatever its method."""

import pytest
import torch

from baselines.registry import EDITORS
from elder.encoding import encode
from experiments.runner import build
from tests.baselines.helpers import logits, records
from tests.conftest import compose_cfg, tiny


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("method", sorted(EDITORS))
def test_building_an_editor_leaves_the_models_outputs_unchanged(method, arch):
    model = tiny(arch)
    batch = records(2)
    before = logits(model, batch)
    editor = build(compose_cfg(f"model=tiny_{arch}", f"method={method}").method, model=model)
    enc = encode(model.tokenizer, [r.prompt for r in batch], [r.target for r in batch])
    assert torch.equal(editor.forward(enc).logits, before)
