"""What the tables range over, and how things are named in them."""

from __future__ import annotations

MODELS = ["smollm2_135m", "gpt2_xl", "llama2_7b"]
PAPER_MODELS = ["gpt2_xl", "llama2_7b"]  # the models the ELDER paper reports
DATASETS = ["zsre", "counterfact"]
METHODS = ["ft_l", "lora", "rome", "melo", "grace", "lemoe", "elder"]  # the paper's row order
N_EDITS = 1000  # the paper's main setting (1000 edits per stream)

MODEL_NAMES = {"smollm2_135m": "SmolLM2-135M", "gpt2_xl": "GPT2-XL", "llama2_7b": "LLaMA2-7B"}
DATA_NAMES = {"zsre": "ZsRE", "counterfact": "CounterFact"}
METHOD_NAMES = {
    "base": "Base",
    "ft_l": "FT-L",
    "lora": "LoRA",
    "rome": "ROME",
    "melo": "MELO",
    "grace": "GRACE",
    "lemoe": "LEMoE",
    "elder": "ELDER",
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
