"""Run one experiment: `python run.py method=elder model=llama2_7b data=zsre`.

Sweeps: `python run.py -m method.k=1,2,3`. Resume a killed run: `python run.py resume=<run
folder>`. See conf/ for every option. Bad input ends with one line on stderr and exit code 2
(set ELDER_TRACEBACK=1 for the traceback).
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.runner import run


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        row = run(cfg, overrides=tuple(HydraConfig.get().overrides.task))
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("ELDER_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
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
