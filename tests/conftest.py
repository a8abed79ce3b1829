"""Shared fixtures: compose the real Hydra config (as run.py does) into a temp output dir."""

from __future__ import annotations

import os
import shutil
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
os.environ.setdefault("DFDISTILL_COMPILE", "off")  # no inductor builds in the suite (tests/unit/engine/test_compiled.py opts in)


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
    """Artifacts of tests never touch the user's cache. Experts and scores are shared across tests (content
    keys, same bytes either way); finished distillations are not (dfdistill.distilled), or whether a test
    distils would depend on which tests ran before it."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("DFDISTILL_CACHE", str(cache))
    shutil.rmtree(cache / "distilled", ignore_errors=True)
    from dfdistill.config import resolve

    resolve._SAID.clear()  # each test sees the recipe notes its own runs log (said once per process otherwise)


def interrupted_then_resumed(compose_cfg, tmp_path: Path, monkeypatch, method_cls: type, args: list[str],
                             crash_at: int) -> tuple[dict, dict, dict]:
    """Run `args` straight through, and again with `method_cls.step` raising at `crash_at` followed by a
    plain rerun of the same config (which resumes from the checkpoint). Returns (straight synthetic.pt,
    resumed synthetic.pt, the resumed run's record); the caller compares them."""
    from dfdistill.artifacts import load_tensor_file
    from dfdistill.checkpoint import CHECKPOINT_FILE
    from dfdistill.pipeline import run

    run(compose_cfg(args, tmp_path / "straight"))
    real_step = method_cls.step

    def crash(self, it):
        if it == crash_at:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, it)

    monkeypatch.setattr(method_cls, "step", crash)
    with pytest.raises(KeyboardInterrupt):  # force: distil here, not reuse the straight run's finished set
        run(compose_cfg([*args, "force=true"], tmp_path / "killed"))
    assert load_tensor_file(tmp_path / "killed" / CHECKPOINT_FILE)["iteration"] == crash_at
    monkeypatch.setattr(method_cls, "step", real_step)
    info = run(compose_cfg(args, tmp_path / "killed"))
    return torch.load(tmp_path / "straight" / "synthetic.pt"), torch.load(tmp_path / "killed" / "synthetic.pt"), info
