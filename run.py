"""dfdistill entry point: `python run.py [group=option ...] [key=value ...]` (see README).

`dfdistill.entry.cli.main` checks the overrides before Hydra composes them and turns every user error
into one `error: ...` line with exit code 2; `job` is the run itself (dfdistill.run.pipeline.run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dfdistill.entry.cli import job
from dfdistill.entry.cli import main as cli_main
from dfdistill.config.store import register_configs

register_configs()


# absolute, so tests can import this file and call cli_main(main, argv) in-process
@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent / "conf"), config_name="config")
def main(cfg: DictConfig) -> float:
    return job(cfg)


if __name__ == "__main__":
    sys.exit(cli_main(main))
