"""How an edit batch's training iterations are launched (``method.step``).

Every iteration of a batch does the same work on tensors of the same shapes (route, forward
from the first MoLoRA layer, loss, backward, optimizer step, protect's projection); only the
values change. ``eager`` launches each kernel from Python, every iteration: on a GPU such an
iteration is bound by launch latency, not by its FLOPs (issue #29). ``cuda_graph`` runs
iteration 1 eagerly, which allocates the gradients and Adam's moments, then records one
iteration into a CUDA graph (recording runs nothing) and replays that graph as iterations
2..n: one graph launch per iteration, kernel for kernel the work of the eager iterations.

A recorded iteration must not synchronise with the host. It reads no value (no ``.item()``,
no early stop) and indexes by precomputed integer positions, not boolean masks; the optimizer
keeps its step count and learning rate on the device (:func:`adam`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Outputs = tuple[torch.Tensor, ...]


def adam(params: list[torch.nn.Parameter], lr: float, step: str) -> torch.optim.Adam:
    """Adam for ``step``: under ``cuda_graph`` capturable, with its lr a device tensor that an
    lr scheduler updates in place, so that every replay reads the current value."""
    if step == "eager":
        return torch.optim.Adam(params, lr=lr)
    ref = params[0]
    dtype = torch.float64 if ref.dtype == torch.float64 else torch.float32
    lr_tensor = torch.tensor(lr, device=ref.device, dtype=dtype)
    return torch.optim.Adam(params, lr=lr_tensor, capturable=True)


def check_device(step: str, device: torch.device) -> None:
    """Refuse ``cuda_graph`` off a CUDA device, before any work."""
    if step == "cuda_graph" and device.type != "cuda":
        raise ValueError(
            f"ELDER: step=cuda_graph needs the model on a CUDA device, not {device.type}"
        )


def iterate(
    loss: Callable[[], Outputs],
    update: Callable[[Outputs], None],
    n: int,
    after: Callable[[], None],
    step: str = "eager",
    stop: Callable[[Outputs], bool] | None = None,
    device: torch.device | None = None,
) -> tuple[Outputs, int]:
    """Up to ``n`` iterations of ``update(loss())``, ``after()`` (host work such as the lr
    schedule) following each. ``stop(outputs)`` ends the loop before an update (eager only);
    ``device``: the GPU of a ``cuda_graph`` iteration's tensors. Returns the last iteration's
    outputs (their first is the loss) and the updates made."""
    if step == "eager":
        for i in range(n):
            out = loss()
            if stop is not None and stop(out):
                return out, i
            update(out)
            after()
        return out, n
    if stop is not None:
        raise ValueError("a captured iteration cannot stop early: it reads no loss on the host")

    def iteration() -> Outputs:
        out = loss()
        update(out)
        return out

    with torch.cuda.device(device):  # streams and the graph on the model's own GPU
        return _replayed(iteration, n, after), n


def _replayed(iteration: Callable[[], Outputs], n: int, after: Callable[[], None]) -> Outputs:
    side = torch.cuda.Stream()  # warm-up off the default stream, as capture requires
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = iteration()  # iteration 1, eager: allocates the gradients and Adam's state
    torch.cuda.current_stream().wait_stream(side)
    after()
    if n == 1:
        return out
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = iteration()  # recorded, not run: its outputs are the graph's static tensors
    for _ in range(n - 1):  # iterations 2..n
        graph.replay()
        after()
    return out
