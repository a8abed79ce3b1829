"""Read the dataset config group into the one schema (`config.schema.DatasetConfig`) with an absolute root.

Why: loaders are called from run.py (a composed DictConfig), scripts and tests (plain dicts); all
of them go through `dataset_config`, so every path sees the same types, defaults and range checks,
and a bad value is a one-line ConfigError.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from dfdistill.config.schema import DatasetConfig
from dfdistill.errors import ConfigError, DataError


def _original_cwd() -> Path:
    """Hydra's launch directory when running under Hydra (it may chdir), else the process cwd."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if HydraConfig.initialized():
            return Path(get_original_cwd())
    except Exception:  # noqa: BLE001 - hydra missing or not running
        pass
    return Path.cwd()


def resolve_root(root: Any) -> Optional[Path]:
    """Absolute root: ~ and $VARS expanded, relative paths taken from the launch directory."""
    if root is None or str(root).strip() == "":
        return None
    p = Path(os.path.expandvars(str(root))).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else _original_cwd() / p))


def dataset_config(cfg: Any) -> DatasetConfig:
    """A mapping / DictConfig / DatasetConfig as a validated DatasetConfig whose root is absolute."""
    if isinstance(cfg, DatasetConfig):
        out = dataclasses.replace(cfg)
    else:
        from omegaconf import OmegaConf
        from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

        node = OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else dict(cfg) if isinstance(cfg, Mapping) else cfg
        if isinstance(node, dict):
            node.pop("defaults", None)  # a YAML read directly (not composed) still lists its Hydra defaults
        try:
            out = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DatasetConfig), node))
        except MissingMandatoryValue as exc:
            key = getattr(exc, "full_key", "") or "a key"
            raise ConfigError(f"dataset.{key.split('.')[-1]} must be set (it is ??? in the dataset config)") from None
        except OmegaConfBaseException as exc:
            raise ConfigError(f"invalid dataset config: {str(exc).splitlines()[0]}") from None
    root = resolve_root(out.root)
    out.root = None if root is None else str(root)
    return out


def require_root(cfg: DatasetConfig, expected: str) -> Path:
    """The dataset root as a Path, or a one-line error saying what should be there."""
    if cfg.root is None:
        raise ConfigError(f"dataset.root is not set for '{cfg.name}': set dataset.root=<folder containing {expected}>")
    root = Path(cfg.root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist: expected {expected} there")
    return root


def decode_train_limit(cfg: DatasetConfig) -> Optional[int]:
    """Rows per class a loader may stop at; ZCA must be fitted on the whole train split."""
    return None if cfg.zca else cfg.max_train_per_class
