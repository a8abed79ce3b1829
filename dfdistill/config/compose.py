"""Compose conf/config.yaml outside `@hydra.main` (tests, sweep planning), exactly as run.py would."""

from __future__ import annotations

from functools import lru_cache

from omegaconf import DictConfig, OmegaConf, open_dict
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dfdistill.config.renames import check_overrides
from dfdistill.config.resolve import CONF_DIR
from dfdistill.config.store import register_configs


@lru_cache(maxsize=1)
def method_schemas_by_option() -> dict[str, str]:
    """conf/method/<option>.yaml -> the schema it extends (`- base_<schema>` in its defaults)."""
    parents = {}
    for path in (CONF_DIR / "method").glob("*.yaml"):
        defaults = OmegaConf.load(path).get("defaults") or []
        parents[path.stem] = next((d for d in defaults if isinstance(d, str) and d != "_self_"), None)

    def schema(option: str, depth: int = 0) -> str:  # variants extend another option's yaml
        parent = parents.get(option)
        if parent is None or depth > 10:
            return option
        return parent[len("base_"):] if parent.startswith("base_") else schema(parent, depth + 1)

    return {option: schema(option) for option in parents}


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
