"""dfdistill entry point: `python run.py [group=option ...] [key=value ...]` (see README)."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from dfdistill.config.store import register_configs
from dfdistill.errors import DfdistillError

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from dfdistill.pipeline import format_summary, run

    try:
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
