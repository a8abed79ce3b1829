"""A tiny logger interface with a no-op and a W&B implementation.

`logger=none` never imports wandb. W&B defaults to offline mode (clusters without internet);
runs are written under the Hydra run dir and can be uploaded later with `wandb sync`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


class NullLogger:
    def log(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def image(self, key: str, path: Path, caption: str = "") -> None:
        pass

    def table(self, key: str, dataframe) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


class WandbLogger(NullLogger):
    def __init__(self, cfg, run_config: dict, out_dir: Path, name: str):
        import wandb  # imported only when selected

        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project, mode=cfg.mode, dir=str(out_dir), group=cfg.group, tags=list(cfg.tags),
            name=name, config=run_config, reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"),
        )

    def log(self, metrics, step=None):
        self.run.log(metrics, step=step)

    def summary(self, values):
        for k, v in values.items():
            self.run.summary[k] = v

    def image(self, key, path, caption=""):
        self.run.log({key: self._wandb.Image(str(path), caption=caption)})

    def table(self, key, dataframe):
        self.run.log({key: self._wandb.Table(dataframe=dataframe)})

    def finish(self, failed=False):
        self.run.finish(exit_code=1 if failed else 0)


def build_logger(cfg, run_config: dict, out_dir: Path, name: str) -> NullLogger:
    if cfg.name == "wandb":
        return WandbLogger(cfg, run_config, out_dir, name)
    return NullLogger()
