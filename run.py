"""Run one experiment: `python run.py method=elder model=llama2_7b data=zsre`.

Sweeps: `python run.py -m method.k=1,2,3`. See conf/ for every option.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.runner import run


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    row = run(cfg, overrides=tuple(HydraConfig.get().overrides.task))
    shown = (
        "reliability",
        "generalization",
        "locality",
        "reliability_tok",
        "generalization_tok",
        "retention",
        "agreement",
        "s_per_edit",
        "extra_params",
    )
    print("  ".join(f"{k}={row[k]}" for k in shown if k in row), f"\nrun: {row['run_id']}")


if __name__ == "__main__":
    main()
