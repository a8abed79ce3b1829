"""dfdistill entry point: `python run.py [group=option ...] [key=value ...]` (see README)."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from dfdistill.config.store import register_configs
from dfdistill.errors import DfdistillError

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from dfdistill.config.resolve import resolve_config
    from dfdistill.pipeline import format_summary, run

    with open_dict(cfg):  # what the user typed wins over recipes and profiles (config/resolve.py)
        cfg.cli_overrides = list(HydraConfig.get().overrides.task)
    try:
        if cfg.print_config:  # stdout is the config alone (no log lines), so it can be piped or parsed
            logging.getLogger("dfdistill").setLevel(logging.WARNING)
            print(OmegaConf.to_yaml(resolve_config(cfg)), end="")
            return float("nan")
        record = run(cfg)
    except DfdistillError as exc:
        if os.environ.get("DFDISTILL_DEBUG") or os.environ.get("HYDRA_FULL_ERROR"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_summary(record))
    return float(record.get("acc_mean", float("nan")))


if __name__ == "__main__":
    main()
