"""Shared fixtures: compose the real Hydra config (as run.py does) into a temp output dir."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig, open_dict

from dfdistill.config.compose import compose_run_config
from dfdistill.config.store import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
CIFAR_JPEG = (ROOT / ".." / "shared" / "data" / "cifar10-jpeg").resolve()

register_configs()
torch.set_num_threads(1)


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/config.yaml with `overrides`; logger=none and a concrete output_dir."""
    cfg = compose_run_config(["logger=none", *overrides])
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
        cfg.progress = False
    return cfg


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_cfg(overrides, out=None) -> composed DictConfig writing under tmp_path."""

    def _compose(overrides: list[str], out: Path | None = None) -> DictConfig:
        return compose_config(overrides, out or tmp_path / "run")

    return _compose


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Artifacts of tests never touch the user's cache."""
    monkeypatch.setenv("DFDISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
