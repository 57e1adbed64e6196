"""Run one experiment: `python run.py method=elder model=llama2_7b data=zsre`.

Sweeps: `python run.py -m method.k=1,2,3`. Resume a killed run: `python run.py resume=<run
folder>`. See conf/ for every option. Bad input, from a mistyped override to a missing data
file, ends with one `error:` line on stderr and exit code 2 before any work is done (set
ELDER_TRACEBACK=1 for the traceback).
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import experiments.configs  # noqa: F401  (stores the schemas Hydra composes against)
from experiments.runner import run

SHOWN = (
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


# What a bad input raises: a mistyped override (Hydra, OmegaConf), a missing file, a bad value.
BAD_INPUT = (ValueError, FileNotFoundError, HydraException, OmegaConfBaseException)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        row = run(cfg, overrides=tuple(HydraConfig.get().overrides.task))
    except BAD_INPUT as err:  # here, before Hydra adds a line of its own to stderr
        fail(err)
    print("  ".join(f"{k}={row[k]}" for k in SHOWN if k in row), f"\nrun: {row['run_id']}")


def message(err: BaseException) -> str:
    """One line for a bad input: Hydra's own words, and OmegaConf's reason where it has one."""
    cause = err.__cause__
    lines = [str(err).splitlines()[0].rstrip(".")] if str(err) else [type(err).__name__]
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).splitlines()[0])
    return ": ".join(lines)


def fail(err: BaseException) -> None:
    """Exit 2 with one ``error:`` line (the traceback instead with ``ELDER_TRACEBACK=1``)."""
    if os.environ.get("ELDER_TRACEBACK"):
        raise err
    print(f"error: {message(err)}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach the handler below
    try:
        main()
    except BAD_INPUT as err:
        fail(err)
