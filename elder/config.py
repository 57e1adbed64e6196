"""ELDERConfig: every knob of the method, with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass

ROUTING_MODES = ("soft", "hard")
AUX_LOSSES = ("guided", "none", "balance")


@dataclass
class ELDERConfig:
    """Hyperparameters of ELDER (Li et al., AAAI 2025); defaults are the paper's."""

    layer_pattern: str  # FC layer to wrap, {} = block index: "model.layers.{}.mlp.down_proj"
    first_layer: int  # block index of the first MoLoRA layer
    # Block whose input at the last prompt token is the routing query (default: first_layer).
    query_block: int | None = None
    L: int = 6  # number of consecutive blocks with a MoLoRA module
    N: int = 4  # LoRAs per MoLoRA module
    k: int = 2  # LoRAs mixed per sequence (top-k)
    r: int = 8  # LoRA rank
    alpha: float = 8.0  # LoRA scale is alpha / r (the paper does not state it; PEFT's default)
    eps: int = 12  # deferral threshold ε on the Hamming distance between allocation codes
    lam: float = 1e-2  # λ, weight of the auxiliary (guided) loss
    lr: float = 1e-4  # Adam learning rate
    iterations: int = 50  # optimisation steps per edit batch
    routing: str = "soft"  # while training: "soft" = router's top-k, "hard" = preset allocation
    aux_loss: str = "guided"  # "guided" (the paper), "none", or "balance" (Switch-Transformer loss)
    defer: bool = True  # deferral mechanism at inference (Algorithm 1)
    fast_path: bool = True  # cache the frozen blocks below the first MoLoRA layer while training
    reset_optimizer: bool = False  # a fresh Adam per batch instead of one for the whole stream
    allocation_seed: int = 0  # seed of the random pre-assigned allocations

    def __post_init__(self) -> None:
        if self.query_block is None:
            self.query_block = self.first_layer
        checks = [
            (self.L >= 1, f"L must be >= 1, got {self.L}"),
            (self.N >= 1, f"N must be >= 1, got {self.N}"),
            (1 <= self.k <= self.N, f"k must be in [1, N={self.N}], got k={self.k}"),
            (self.r >= 1, f"r must be >= 1, got {self.r}"),
            (
                0 <= self.eps <= self.L * self.N,
                f"eps must be in [0, L*N={self.L * self.N}], got {self.eps}",
            ),
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.routing in ROUTING_MODES, f"routing must be one of {ROUTING_MODES}"),
            (self.aux_loss in AUX_LOSSES, f"aux_loss must be one of {AUX_LOSSES}"),
            (
                self.query_block <= self.first_layer,
                f"query_block ({self.query_block}) must not come after the first MoLoRA layer "
                f"({self.first_layer}): the allocation is computed before any MoLoRA runs",
            ),
            ("{}" in self.layer_pattern, f"layer_pattern needs a '{{}}': {self.layer_pattern!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ELDER: {message}")

    @property
    def target_modules(self) -> list[str]:
        return [self.layer_pattern.format(self.first_layer + i) for i in range(self.L)]
