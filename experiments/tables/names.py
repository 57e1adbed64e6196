"""What the tables range over, and how things are named in them."""

from __future__ import annotations

from omegaconf import OmegaConf

from experiments.configs import CONF

MODELS = ["smollm2_135m", "gpt2_xl", "llama2_7b"]
PAPER_MODELS = ["gpt2_xl", "llama2_7b"]  # the models the ELDER paper reports
DATASETS = ["zsre", "counterfact"]
# The paper's row order, with its arXiv version's Defer (GRACE's online SERAC-like editor) beside
# the AAAI version's SERAC (trained scope classifier and counterfactual model). LEMoE is ours.
METHODS = [
    "ft_l", "lora", "rome", "wilke", "serac", "defer", "t_patcher", "melo", "grace", "lemoe",
    "elder",
]  # fmt: skip
BEYOND = ["wise", "alphaedit"]  # the methods researchers compare with today, after the paper's
N_EDITS = 1000  # the paper's main setting (1000 edits per stream)
# Streams under the ELDER paper's own protocol (several phrasings of a fact edited under one
# label, others held out), shown in Table 1 beside the strict streams.
PAPER_PROTOCOL_DATASETS = ["counterfact_paper"]

# ELDER's defaults before the reference's choices became options (issue #23): the values a run
# folder without those keys is read with (elder.config.LEGACY). Its runs also routed from the
# block of the first MoLoRA layer, the one block every model config names.
ELDER_LEGACY = {
    "method.query": "residual",
    "method.lora_init": "peft",
    "method.optimizer": "stream",
    "method.label": "target",
    "model.layers.elder.query_block": "${model.layers.elder.first}",
}
# The configuration that Tables 4-5 and Figs. 2-3 vary: every run of theirs predates #23.
ELDER_STUDY_BASE = ELDER_LEGACY
# ELDER+ (issue #24): the method keys `+preset=elder_plus` sets.
ELDER_PLUS = {
    f"method.{k}": str(v)
    for k, v in OmegaConf.to_container(
        OmegaConf.load(CONF / "preset" / "elder_plus.yaml").method, resolve=False
    ).items()
}
# GRACE's prompt replacement before issue #26 (positions 0..p, not the reference's 0..p-1): the
# value every GRACE run before it has.
GRACE_LEGACY = {"method.replacement": "replace_prompt"}
# The rows of the method tables (1, 2, 3, 7-10): (method, display name, overrides).
METHOD_ROWS = [(m, m, {}) for m in METHODS] + [("elder", "elder_legacy", ELDER_LEGACY)]
# The preset until 2026-12-03: 16 LoRAs per layer, not 64 (its runs: elder_plus_protect_*).
ELDER_PLUS_N16 = {**ELDER_PLUS, "method.N": "16"}
# ELDER+ as first built (issue #24, commits 60d9929-257bfcc): N=16, no protection, 8 stored
# edits rehearsed per batch. The ablation varies around it; its 1000-edit run is
# elder_plus_zsre1000.
ELDER_PLUS_V1 = {
    **{k: v for k, v in ELDER_PLUS_N16.items() if k != "method.protect"},
    "method.rehearse": "8",
}
METHOD_ROWS.append(("elder", "elder_plus", ELDER_PLUS))  # issue #24: `+preset=elder_plus`
METHOD_ROWS.append(("elder", "elder_plus_n16", ELDER_PLUS_N16))
METHOD_ROWS.append(("elder", "elder_plus_v1", ELDER_PLUS_V1))
METHOD_ROWS.insert(METHODS.index("grace") + 1, ("grace", "grace_legacy", GRACE_LEGACY))
METHOD_ROWS += [(m, m, {}) for m in BEYOND]

MODEL_NAMES = {"smollm2_135m": "SmolLM2-135M", "gpt2_xl": "GPT2-XL", "llama2_7b": "LLaMA2-7B"}
DATA_NAMES = {
    "zsre": "ZsRE",
    "counterfact": "CounterFact",
    "counterfact_paper": "CounterFact (paper protocol)",
    "zsre_balanced": "ZsRE (MELO's balanced protocol)",
}
METHOD_NAMES = {
    "base": "Base",
    "ft_l": "FT-L",
    "lora": "LoRA",
    "rome": "ROME",
    "wilke": "WilKE",
    "serac": "SERAC",
    "defer": "Defer",
    "t_patcher": "T-Patcher",
    "melo": "MELO",
    "grace": "GRACE",
    "lemoe": "LEMoE",
    "elder": "ELDER",
    "elder_legacy": "ELDER (pre-#23 defaults)",
    "elder_plus": "ELDER+ (ours, +preset=elder_plus)",
    "elder_plus_n16": "ELDER+ with N=16 (the preset before 2026-12-03)",
    "elder_plus_v1": "ELDER+ v1 (N=16, rehearsal, no protection)",
    "grace_legacy": "GRACE (replace 0..p, pre-#26 default)",
    "wise": "WISE",
    "alphaedit": "AlphaEdit",
}
TASK_NAMES = {
    "rte": "RTE",
    "boolq": "BoolQ",
    "sst2": "SST2",
    "mutual": "MuTual",
    "conll03": "CoNLL03",
    "nq": "NQ",
    "gsm8k": "GSM8K",
    "samsum": "SAMSum",
}


def name(key: str) -> str:
    """The display name of a model, dataset, method or task key (the key itself if unknown)."""
    for table in (MODEL_NAMES, DATA_NAMES, METHOD_NAMES, TASK_NAMES):
        if key in table:
            return table[key]
    return key
