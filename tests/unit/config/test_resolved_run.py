"""resolve_run: one frozen object of typed parts, built once; the DictConfig only for provenance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf.errors import ReadonlyConfigError

from dfdistill.config.resolve import resolve_run
from dfdistill.schema.groups import DatasetConfig, EvalConfig
from dfdistill.pruning.config import PruningConfig


def test_parts_are_typed_frozen_and_the_config_read_only(compose_cfg):
    run = resolve_run(compose_cfg(["method=dc", "pruning=loss", "pruning.ratio=0.5", "profile=smoke", "ipc=2"]))
    assert isinstance(run.dataset, DatasetConfig) and isinstance(run.eval, EvalConfig)
    assert isinstance(run.pruning, PruningConfig) and run.pruning.ratio == 0.5
    assert isinstance(run.method, run.method_cls.config_cls) and run.method.name == "dc"
    assert (run.ipc, run.stage) == (2, "all")
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.distill_key = "x"  # type: ignore[misc]
    with pytest.raises(ReadonlyConfigError):
        run.cfg.ipc = 3


def test_each_run_gets_its_own_typed_parts(compose_cfg):
    """Validation remembers its objects across a sweep; a run's parts are copies, so nothing a run
    holds can leak into another run resolved in the same process."""
    a, b = (resolve_run(compose_cfg(["method=dc", "profile=smoke"])) for _ in range(2))
    assert a.method == b.method and a.method is not b.method and a.dataset is not b.dataset


def test_relative_dataset_root_is_made_absolute_once(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = resolve_run(compose_cfg(["dataset=image_folder", "dataset.root=rel/data", "profile=smoke"]))
    assert run.dataset.root == str(tmp_path / "rel" / "data")
    assert run.cfg.dataset.root == "rel/data"  # the identity hashes what was written


def test_the_rebuilders_are_gone():
    """The typed objects come from resolution only (issue 23): no second path rebuilds them."""
    import dfdistill.config.resolve as resolve
    import dfdistill.data.spec as spec
    import dfdistill.pruning.static as static
    from dfdistill.pruning.ite import ITESelector

    assert not hasattr(resolve, "method_config") and not hasattr(static, "parse_config")
    assert not hasattr(spec, "dataset_config") and not hasattr(ITESelector, "from_config")
    root = Path(__file__).resolve().parents[3] / "dfdistill"
    builders = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if "DistillContext(" in p.read_text()]
    assert builders == ["methods/base.py"]  # build_context, the one factory
