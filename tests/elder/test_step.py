"""ELDER's ``step=cuda_graph`` (issue #29): iterations 2.. replay one recorded CUDA graph.

A CUDA graph records kernels, not host decisions: the iteration it records must never read a
value back or take a shape from data. Part of that is checked here on the CPU: dynamo must
trace the iteration's forward, loss and projection as one graph, which ``.item()``, a
data-dependent shape or a branch on a tensor's value would break (host copies such as
``.cpu()``, the backward and Adam it does not see). The recording itself is checked where a
CUDA device is, against the eager iterations.
"""

import pytest
import torch
from hydra.utils import instantiate

from elder import trunk
from tests.conftest import compose_cfg, tiny
from tests.elder.test_elder import _elder, _records
from tests.elder.test_memory_options import MEMORY

CONFIGS = [
    ("llama", {}),
    ("gpt2", {}),
    ("llama", {**MEMORY, "N": 2, "k": 1, "protect": "null_space"}),
]


def _model(arch: str, device: str):
    torch.manual_seed(0)
    return instantiate(compose_cfg(f"model=tiny_{arch}", f"model.device={device}").model)


def test_cuda_graph_is_refused_before_any_work_on_a_model_off_cuda():
    with pytest.raises(ValueError, match="step=cuda_graph needs the model on a CUDA device"):
        _elder(_model("llama", "cpu"), step="cuda_graph")


@pytest.mark.parametrize("options", [{"fast_path": False}, {"stop_loss": 0.01}])
def test_cuda_graph_refuses_what_a_recorded_iteration_cannot_do(options):
    with pytest.raises(ValueError, match="needs fast_path=true and stop_loss=0"):
        _elder(tiny("llama"), step="cuda_graph", **options)


def test_an_unknown_step_is_refused():
    with pytest.raises(ValueError, match="step must be one of"):
        _elder(tiny("llama"), step="graph")


@pytest.mark.parametrize("arch, options", CONFIGS)
def test_the_recorded_iteration_never_waits_for_the_host(arch, options):
    editor = _elder(tiny(arch), **options)
    records = _records(8)
    editor.edit(records[:4])  # something stored: protect has bases to project onto
    enc = editor.encode(records[4:])
    preset = editor.allocations.batch([editor.label_of(r) for r in records[4:]])
    train_preset = preset if editor.config.route == "memory" else None
    query = editor.query(enc)
    packed = trunk.pack(trunk.block_input(editor.model, editor.config.first_layer, enc), enc)

    def iteration():
        losses = editor._losses(enc, query, packed, train_preset, preset)
        if editor.null_space is not None:
            for i, layer in enumerate(editor.layers):
                editor.null_space.project(i, layer.lora_A)
        return losses

    torch._dynamo.reset()
    traced = torch.compile(iteration, fullgraph=True, backend="eager")  # raises at a break
    with torch.no_grad():
        expected = iteration()[0]  # A already holds its anchors: the projection moves nothing
        assert torch.equal(traced()[0], expected)


GRAPH_CASES = [*CONFIGS, ("llama", {"optimizer": "stream"}), ("llama", {"iterations": 1})]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch, options", GRAPH_CASES)
def test_cuda_graph_edits_the_model_the_eager_iterations_do(arch, options):
    options = {"iterations": 7, "lr_step": 3, "lr": 1e-2, **options}  # StepLR steps in a batch
    records = _records(8)
    trained, stats = {}, {}
    for step in ("eager", "cuda_graph"):
        model = _model(arch, "cuda")
        model.hf.double()  # float64: what differs is the launching, not float32 rounding
        torch.manual_seed(1)  # the same LoRA and router draws for both
        editor = _elder(model, **options, step=step)
        stats[step] = [editor.edit(records[i : i + 4]) for i in (0, 4)]
        trained[step] = {k: t.cpu() for k, t in editor.state()[0].items()}
    for graph, eager in zip(stats["cuda_graph"], stats["eager"], strict=True):
        assert graph == pytest.approx(eager, rel=1e-9)
    for key, eager in trained["eager"].items():
        if eager.is_floating_point():
            torch.testing.assert_close(trained["cuda_graph"][key], eager, rtol=0, atol=1e-10)
        else:
            assert torch.equal(trained["cuda_graph"][key], eager), key
