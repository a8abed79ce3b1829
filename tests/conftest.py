"""Shared fixtures: compose the real Hydra config (as run.py does) into a temp output dir."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig, open_dict

from dfdistill.config.compose import compose_run_config
from dfdistill.config.store import register_configs
from dfdistill.sweeps.compose_cache import Composer

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
CIFAR_JPEG = (ROOT / ".." / "shared" / "data" / "cifar10-jpeg").resolve()

register_configs()
torch.set_num_threads(1)
os.environ.setdefault("DFDISTILL_COMPILE", "off")  # no inductor builds in the suite (tests/unit/engine/test_compiled.py opts in)


_COMPOSER = Composer()  # the session's compositions, one per (context, group option): see compose_config
_RESOLVED: dict[tuple[str, ...], DictConfig] = {}


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/config.yaml with `overrides`; logger=none and a concrete output_dir.

    Why not compose_run_config directly: it keeps one Hydra composition per *combination* of group
    options (and per order of them), and the suite asks for hundreds of combinations, each a 0.5-1 s
    composition. The sweep planner's Composer keeps one per group option and assembles the rest,
    which equals Hydra's composition (tests/unit/config/test_fixture_compose.py and
    tests/unit/sweeps/test_plan_speed.py). Anything it cannot compose goes through Hydra, whose own
    message is what a bad override must raise."""
    overrides = ["logger=none", *overrides]
    try:
        cfg, _ = _COMPOSER.compose(overrides)
    except Exception:
        cfg = compose_run_config(overrides)
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


@pytest.fixture(scope="session")
def resolved(tmp_path_factory) -> Callable[[list[str]], DictConfig]:
    """resolved(overrides) -> resolve_config(composed overrides), resolved once per session per override
    list; each call gets its own deep copy, so a test may edit it. For tests that only read the effective
    config: the recipe notes are logged the first time only, and a test that changes the registries,
    the environment or the working directory before resolving must call resolve_config itself."""
    from dfdistill.config.resolve import resolve_config

    out = tmp_path_factory.mktemp("resolved") / "run"

    def _resolved(overrides: list[str]) -> DictConfig:
        key = tuple(overrides)
        if key not in _RESOLVED:
            _RESOLVED[key] = resolve_config(compose_config(list(overrides), out))
        return copy.deepcopy(_RESOLVED[key])

    return _resolved


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Artifacts of tests never touch the user's cache. Experts and scores are shared across tests (content
    keys, same bytes either way); finished distillations are not (dfdistill.run.distilled), or whether a test
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
    from dfdistill.core.artifacts import load_tensor_file
    from dfdistill.run.checkpoint import CHECKPOINT_FILE
    from dfdistill.run.pipeline import run

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


SLOW_CASES = {line.strip() for line in (Path(__file__).parent / "slow_cases.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(config, items):
    """Mark the measured-slow cases (tests/slow_cases.txt) `slow`, so the default run stays under 3 minutes
    while `-m slow` still runs them (tests/unit/test_slow_cases.py fails on an id that names no test)."""
    for item in items:
        if item.nodeid in SLOW_CASES:
            item.add_marker(pytest.mark.slow)
