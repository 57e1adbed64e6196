"""The MoLoRA layer computes y = W0 v + Σ_{i∈topk} s_i (α/r) B_i A_i v + b, per sequence."""

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from elder.molora import MoLoRALayer


def _layer(kind: str) -> MoLoRALayer:
    torch.manual_seed(0)
    base = nn.Linear(6, 5) if kind == "linear" else Conv1D(5, 6)
    nn.init.normal_(base.bias)
    layer = MoLoRALayer(base, query_dim=3, num_experts=4, r=2, alpha=4.0)
    nn.init.normal_(layer.lora_B)  # non-zero so that the LoRA term shows
    return layer


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_output_equals_the_explicit_formula(kind):
    layer = _layer(kind)
    v = torch.randn(2, 3, 6)
    gates = torch.tensor([[0.5, 0.0, 0.2, 0.0], [0.0, 0.7, 0.0, 0.1]])
    layer.gates = gates
    w0 = layer.base_layer.weight if kind == "linear" else layer.base_layer.weight.T  # (out, in)
    for b in range(2):
        delta_w = sum(
            gates[b, i] * layer.scale * layer.lora_B[i] @ layer.lora_A[i] for i in range(4)
        )
        expected = v[b] @ (w0 + delta_w).T + layer.base_layer.bias
        torch.testing.assert_close(layer(v)[b], expected, rtol=1e-5, atol=1e-5)


def test_every_token_of_a_sequence_uses_the_same_mixture():
    layer = _layer("linear")
    layer.gates = torch.tensor([[0.6, 0.3, 0.0, 0.0]])
    token = torch.randn(6)
    v = torch.stack([token, torch.randn(6), token])[None]  # the same token at positions 0 and 2
    out = layer(v)
    torch.testing.assert_close(out[0, 0], out[0, 2], rtol=0, atol=0)


def test_gates_off_is_exactly_the_base_layer():
    layer = _layer("conv1d")
    v = torch.randn(2, 4, 6)
    assert torch.equal(layer(v), layer.base_layer(v))


def test_deferred_rows_get_exactly_the_base_output():
    layer = _layer("linear")
    v = torch.randn(2, 4, 6)
    layer.gates = torch.full((2, 4), 0.25)
    layer.active = torch.tensor([False, True])
    out = layer(v)
    assert torch.equal(out[0], layer.base_layer(v)[0])
    assert not torch.allclose(out[1], layer.base_layer(v)[1])


def test_lora_b_starts_at_zero_so_a_fresh_layer_changes_nothing():
    base = nn.Linear(6, 5)
    layer = MoLoRALayer(base, query_dim=3, num_experts=4, r=2, alpha=2.0)
    layer.gates = torch.full((1, 4), 0.25)
    v = torch.randn(1, 3, 6)
    assert torch.equal(layer(v), base(v))
