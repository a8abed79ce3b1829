"""Contract of the pruner registry: every registered selection is what some pruning YAML selects, carries
a table label, and runs on a two-class toy set -- a static pruner keeps a class-balanced subset at
ratio 0.5, an adaptive one builds its in-loop selector (a new `@register_pruner` gets these cases).
"""

from __future__ import annotations

import copy

import pytest
import torch

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.schema.options import CONF_DIR, load_option
from dfdistill.config.resolve import resolve_run, swap_group
from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError
from dfdistill.models.factory import make_model_factory
from dfdistill.pruning import apply_static_pruning, build_adaptive
from dfdistill.core.registry import PRUNERS, pruner_class

from conftest import compose_config

PER_CLASS = 6


def option_of(target: str, adaptive: bool) -> str:
    """The first pruning option (sorted) whose YAML selects `target`; fails when none does."""
    for path in sorted((CONF_DIR / "pruning").glob("*.yaml")):
        node = load_option("pruning", path.stem)
        named = (node.get("adaptive") or {}).get("_target_") if adaptive else node.get("_target_")
        if named == target:
            return path.stem
    raise AssertionError(f"no conf/pruning/*.yaml selects {target}")


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory):
    return compose_config(["logger=none", "profile=smoke", "dataset=digits", "method=dm", "ipc=1", "device=cpu",
                           "compile=off"], tmp_path_factory.mktemp("run"))


def toy(channels: int, size: int) -> RealData:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * PER_CLASS, channels, size, size, generator=g)
    y = torch.arange(2).repeat_interleave(PER_CLASS)
    return RealData(x, y, 2, ["a", "b"], (0.5,) * channels, (0.5,) * channels, name="toy", pixels=True)


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_runs_on_a_toy_set(name, base_cfg, tmp_path):
    entry = PRUNERS.get(name)
    assert entry.meta["label"] and pruner_class(entry.meta["target"], adaptive=entry.meta["adaptive"]) is entry.obj
    cfg = copy.deepcopy(base_cfg)
    swap_group(cfg, "pruning", option_of(entry.meta["target"], entry.meta["adaptive"]), set())
    if not entry.meta["adaptive"]:
        cfg.pruning.ratio = 0.5
    run = resolve_run(cfg)
    train = toy(run.dataset.channels, run.dataset.image_size)
    if entry.meta["adaptive"]:
        assert isinstance(build_adaptive(run.pruning, train), entry.obj)
        return
    factory = make_model_factory(run.cfg.backbone, train, torch.device("cpu"))
    kept, info = apply_static_pruning(run.pruning, train, factory, ArtifactCache(tmp_path / "cache"), run.seed,
                                      run.inputs)
    assert kept.class_counts() == [PER_CLASS // 2] * 2 and info["kept"] == PER_CLASS
    assert set(kept.source_index.tolist()) <= set(range(2 * PER_CLASS))


def test_a_target_that_is_not_registered_is_one_line():
    with pytest.raises(ConfigError, match=r"pruning._target_=x.Y is not a registered static pruner; use one of .*"):
        pruner_class("x.Y", adaptive=False)
    with pytest.raises(ConfigError, match="not a registered adaptive selector"):  # a static one is not adaptive
        pruner_class(PRUNERS.get("random").meta["target"], adaptive=True)
