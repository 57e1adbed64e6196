"""ELDERConfig: every knob of the method, with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields

ROUTING_MODES = ("soft", "hard")
AUX_LOSSES = ("guided", "none", "balance")
QUERIES = ("fc_input", "residual")
LORA_INITS = ("reference", "peft")
OPTIMIZERS = ("per_batch", "stream")
LABELS = ("fact", "target")
ROUTES = ("router", "memory")
POOLS = ("last", "mean", "subject")
PROTECTS = ("none", "null_space")
STEPS = ("eager", "cuda_graph")

# What a config written before these options existed ran with. A run folder's config.yaml
# from then lacks the keys; reading it through :func:`upgrade` keeps its meaning.
LEGACY = {"query": "residual", "lora_init": "peft", "optimizer": "stream", "label": "target"}


@dataclass
class ELDERConfig:
    """Hyperparameters of ELDER (Li et al., AAAI 2025); defaults are the paper's."""

    layer_pattern: str  # FC layer to wrap, {} = block index: "model.layers.{}.mlp.down_proj"
    first_layer: int  # block index of the first MoLoRA layer
    # Block whose input at the last prompt token is the routing query (default: first_layer).
    query_block: int | None = None
    # -- where the paper is silent, the reference code decides (docs/elder.md, "ELDER's options")
    # "fc_input": the input of the FC layer ``layer_pattern`` in ``query_block`` (reference);
    # "residual": the hidden state entering ``query_block``.
    query: str = "fc_input"
    lora_init: str = "reference"  # A ~ U(±1/√r) (reference) or U(±1/√in) (PEFT's)
    # "per_batch": a fresh Adam per edit batch with StepLR(lr_step, lr_gamma) stepped every
    # iteration (MELO's scripts); "stream": one Adam, constant lr, for the whole stream.
    optimizer: str = "per_batch"
    lr_step: int = 20  # StepLR step size (iterations); 0 = no schedule
    lr_gamma: float = 0.5  # StepLR factor
    # "fact": phrasings of one fact share an allocation (the paper's "identically labeled
    # edits"); "target": edits with the same target string share one.
    label: str = "fact"
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
    # How a batch's iterations run (elder.step): "eager", or "cuda_graph": iteration 1 eagerly,
    # 2..n as replays of one recorded CUDA graph (same model; one graph launch per iteration).
    step: str = "eager"
    allocation_seed: int = 0  # seed of the random pre-assigned allocations
    # -- beyond the paper (issue #24, docs/elder.md "ELDER+"): each off by default ------------
    # "router": the paper's learned routers and Hamming deferral; "memory": every edit's query
    # is stored with its allocation, an input takes the allocation of its nearest stored query
    # (cosine) and is deferred beyond ``radius``. Routers, ``eps``, ``lam``, ``aux_loss`` and
    # ``routing`` then play no part: training uses the preset allocation, each LoRA gated 1/k.
    route: str = "router"
    radius: float = 0.05  # route=memory: defer where 1 - cos(query, nearest stored) > radius
    # The query: the "last" prompt token (the paper), the "mean" of the prompt, or (route=memory
    # only) "subject": an edit's at its subject's last token, an input matched at its best token
    query_pool: str = "last"
    rehearse: int = 0  # stored edits (texts kept) replayed in every later batch
    stop_loss: float = 0.0  # end a batch's iterations once its model loss is below; 0 = never
    # Each new edit also trains after this many short texts the unedited model samples once per
    # stream (ROME's 10-token contexts): "<text>. <prompt>" -> target, same allocation.
    prefixes: int = 0
    # "null_space" (route=memory only): LoRA B frozen at random, A from zero, and every update of
    # a LoRA's A projected off the FC inputs of the edits stored on it (elder.protect), so a
    # stored edit's teacher-forced output does not move. ``protect_tol``: a direction in which
    # every stored (unit) input holds less than this fraction of its norm is left free.
    protect: str = "none"
    protect_tol: float = 1e-2

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
            (self.query in QUERIES, f"query must be one of {QUERIES}, got {self.query!r}"),
            (
                self.lora_init in LORA_INITS,
                f"lora_init must be one of {LORA_INITS}, got {self.lora_init!r}",
            ),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}",
            ),
            (self.lr_step >= 0, f"lr_step must be >= 0, got {self.lr_step}"),
            (0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1], got {self.lr_gamma}"),
            (self.label in LABELS, f"label must be one of {LABELS}, got {self.label!r}"),
            (self.route in ROUTES, f"route must be one of {ROUTES}, got {self.route!r}"),
            (0 <= self.radius <= 2, f"radius must be in [0, 2], got {self.radius}"),
            (
                self.query_pool in POOLS,
                f"query_pool must be one of {POOLS}, got {self.query_pool!r}",
            ),
            (self.rehearse >= 0, f"rehearse must be >= 0, got {self.rehearse}"),
            (self.stop_loss >= 0, f"stop_loss must be >= 0, got {self.stop_loss}"),
            (self.prefixes >= 0, f"prefixes must be >= 0, got {self.prefixes}"),
            (
                self.protect in PROTECTS,
                f"protect must be one of {PROTECTS}, got {self.protect!r}",
            ),
            (
                self.protect == "none" or self.route == "memory",
                f"protect={self.protect} needs route=memory: with routers a stored edit's "
                "allocation drifts, and no LoRA's inputs can be protected",
            ),
            (
                self.query_pool != "subject" or self.route == "memory",
                "query_pool=subject needs route=memory: a router takes one query vector per "
                "input, not a set of tokens",
            ),
            (0 < self.protect_tol < 1, f"protect_tol must be in (0, 1), got {self.protect_tol}"),
            (self.step in STEPS, f"step must be one of {STEPS}, got {self.step!r}"),
            (
                self.step == "eager" or (self.fast_path and not self.stop_loss),
                f"step={self.step} needs fast_path=true and stop_loss=0: a captured iteration "
                "cannot run the plain path's hooks or read its loss on the host to stop early",
            ),
            ("{}" in self.layer_pattern, f"layer_pattern needs a '{{}}': {self.layer_pattern!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ELDER: {message}")

    @property
    def query_module(self) -> str | None:
        """The FC layer whose input is the query (None: the query is the residual stream)."""
        return self.layer_pattern.format(self.query_block) if self.query == "fc_input" else None

    @property
    def target_modules(self) -> list[str]:
        return [self.layer_pattern.format(self.first_layer + i) for i in range(self.L)]


# The options of issue #24, off: what every config written before them ran with.
BEYOND = (
    "route", "radius", "query_pool", "rehearse", "stop_loss", "prefixes", "protect", "protect_tol",
)  # fmt: skip
BEYOND_OFF = {f.name: f.default for f in fields(ELDERConfig) if f.name in BEYOND}


def upgrade(config: dict) -> dict:
    """An ELDER config as read from a run folder, in today's keys and with its old meaning.

    Before issue #24 a config had none of :data:`BEYOND_OFF`'s keys and ran with them off.
    Before the reference's choices became options, a config had no ``optimizer`` key (nor
    ``query``, ``lora_init``, ``label``) and ran as :data:`LEGACY` says (``stream``: one Adam
    at a constant lr, ``lr_step`` unused); ``reset_optimizer: true`` meant a fresh Adam per
    batch without a schedule.
    """
    config = {**BEYOND_OFF, **config}  # a config from before #24 ran with its options off
    if "optimizer" in config:
        return config  # written with today's keys
    if config.pop("reset_optimizer", False):
        config = {"optimizer": "per_batch", "lr_step": 0, **config}
    return {**LEGACY, **config}
