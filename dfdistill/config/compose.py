"""Compose conf/config.yaml outside `@hydra.main` (tests, sweep planning), exactly as run.py would."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dfdistill.config.renames import check_overrides
from dfdistill.config.options import CONF_DIR, method_schemas_by_option
from dfdistill.config.store import register_configs


def compose_run_config(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The composed primary config for `overrides`; leaves no global Hydra state behind."""
    check_overrides(overrides, method_schemas_by_option())
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose("config", overrides=overrides, return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):  # as run.py records Hydra's task overrides: what was typed wins
        cfg.cli_overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    return cfg
