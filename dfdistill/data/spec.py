"""Where a dataset's files are: the launch-relative root, and the checks loaders share.

Loaders read the dataset as the one schema object (`config.schema.DatasetConfig`) with an absolute
root: `dataset_of` makes it, once per run during resolution (`ResolvedRun.dataset`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

from dfdistill.schema.groups import DatasetConfig, checked
from dfdistill.core.errors import ConfigError, DataError


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


def dataset_of(node: Any) -> DatasetConfig:
    """A dataset node (DatasetConfig, DictConfig or mapping; a YAML read directly may still list its
    Hydra defaults) as the validated DatasetConfig with an absolute root: the one conversion, which
    resolution applies once per run (ResolvedRun.dataset) and scripts and tests use outside a run."""
    from omegaconf import OmegaConf

    if isinstance(node, DatasetConfig):
        return with_absolute_root(node)
    d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    d.pop("defaults", None)
    return with_absolute_root(checked(DatasetConfig, d, "dataset"))


def with_absolute_root(dataset: DatasetConfig) -> DatasetConfig:
    """A copy whose root is absolute (validated objects are remembered and shared: never modified)."""
    root = resolve_root(dataset.root)
    return dataclasses.replace(dataset, root=None if root is None else str(root))


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
