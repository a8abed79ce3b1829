"""Contract of the method registry: every registered method initialises and takes one distillation step
on a two-class toy set (CPU, tiny images, the smoke profile's widths and caps).

The cases are the registry's entries, so registering a method adds its case; nothing here names one.
A method's config is its own YAML + recipe for digits at IPC 1 (through resolve_config, as a run gets
it); the data is a generated two-class set of digits' shape, so the step is fast and needs no files.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.config.resolve import resolve_run, swap_group
from dfdistill.data.real import RealData
from dfdistill.methods.base import build_context
from dfdistill.models.factory import make_model_factory
from dfdistill.core.registry import METHODS

from conftest import compose_config

TOY = ["logger=none", "profile=smoke", "dataset=digits", "ipc=1", "device=cpu", "compile=off", "eval.compare_random=false",
       "profile.expert_train_epochs=1", "profile.num_experts=1"]
PER_CLASS = 6
# Cases over ~3 s (expert trajectories, RFAD's kernel models and validation): their step runs with
# -m slow; their initialisation case stays in the default run.
SLOW_STEP = {"mtt", "tesla", "rfad"}


def toy_real(channels: int, size: int) -> RealData:
    """Two classes of PER_CLASS random images (pixels in [0, 1]) of the dataset's shape."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * PER_CLASS, channels, size, size, generator=g)
    y = torch.arange(2).repeat_interleave(PER_CLASS)
    return RealData(x, y, 2, ["a", "b"], (0.5,) * channels, (0.5,) * channels, name="toy", pixels=True)


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory):
    """One Hydra composition for the file; each case swaps its method option in (as a recipe would)."""
    return compose_config(TOY, tmp_path_factory.mktemp("run"))


def build(name: str, base_cfg, tmp_path):
    """(distiller, toy real set) for method `name`, with its resolved config, on the CPU."""
    cfg = copy.deepcopy(base_cfg)
    swap_group(cfg, "method", name, set())
    run = resolve_run(cfg)
    cls, mcfg = run.method_cls, run.method
    assert cls is METHODS.get(name).obj and isinstance(mcfg, METHODS.get(name).meta["config"])
    real = toy_real(run.dataset.channels, run.dataset.image_size)
    ctx = build_context(real, make_model_factory(run.cfg.backbone, real, torch.device("cpu")), ipc=1, seed=0,
                        device=torch.device("cpu"), cache=ArtifactCache(tmp_path / "cache"), out_dir=tmp_path,
                        augment=True, dsa_strategy=run.dataset.dsa_strategy)
    return cls(mcfg, ctx), real


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_resolves_and_initialises(name, base_cfg, tmp_path):
    d, real = build(name, base_cfg, tmp_path)
    if d.iterations == 0:  # coresets pick with a pretrained network in prepare(); the step case covers them
        return
    d.init_state()  # no prepare(): experts and the like are the step case's
    images = d.images
    assert images.dim() == 4 and images.shape[1] == real.channels and torch.isfinite(images).all()
    assert len(d.labels) >= 2 and set(d.labels.reshape(len(d.labels), -1).argmax(1).tolist()
                                      if d.labels.dim() > 1 else d.labels.tolist()) == {0, 1}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_STEP else n
                                  for n in METHODS.names()])
def test_every_method_takes_a_step(name, base_cfg, tmp_path):
    d, real = build(name, base_cfg, tmp_path)
    d.prepare()
    d.init_state()
    images, labels = d.train_set()
    if d.iterations == 0:  # coresets and the whole split: the set is chosen at init
        assert len(images) == (len(real) if name == "whole" else 2) and set(labels.tolist()) == {0, 1}
        return
    before = d.images.detach().clone()  # what the optimiser moves (RFAD's train_set is its best so far)
    out = d.step(0)
    assert math.isfinite(float(out["loss"]))
    assert torch.isfinite(d.images).all() and torch.isfinite(d.train_set()[0]).all()
    assert not torch.equal(d.images.detach(), before), f"{name}: one step left the synthetic set unchanged"
