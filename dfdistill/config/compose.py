"""Compose conf/config.yaml outside `@hydra.main` (tests, sweep planning), exactly as run.py would."""

from __future__ import annotations

from omegaconf import DictConfig
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dfdistill.config.resolve import CONF_DIR
from dfdistill.config.store import register_configs


def compose_run_config(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The composed primary config for `overrides`; leaves no global Hydra state behind."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose("config", overrides=overrides, return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()
