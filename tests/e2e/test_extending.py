"""Adding a method and a scorer is one module plus one YAML (docs/extending.md).

A toy method and a toy scorer live in a temporary folder outside the package, with their YAMLs in a
temporary config folder; they are found through $DFDISTILL_PLUGINS and `hydra.searchpath` and run end
to end at profile=smoke. Nothing in dfdistill/ or conf/ is edited for them.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from dfdistill.config.compose import compose_run_config
from dfdistill.core.registry import METHODS, SCORERS, method_label

PLUGIN = '''
from dataclasses import dataclass

import torch

from dfdistill.methods.base import ImageDistiller, MethodConfig
from dfdistill.core.registry import register_method, register_scorer


@dataclass
class ToyConfig(MethodConfig):
    iterations: int = 3
    lr_img: float = 0.5


@register_method("toy_mean", config=ToyConfig, label="Toy mean")
class ToyMean(ImageDistiller):
    """Pulls each synthetic image towards its class's mean real image."""

    def step(self, it):
        real = self.ctx.real
        x, y, _ = real.sample_per_class(self.cfg.batch_real, generator=self.gen)
        C = real.num_classes
        means = torch.zeros(C, *x.shape[1:], device=x.device).index_add_(0, y, x)
        means = means / torch.bincount(y, minlength=C).clamp_min(1).view(-1, 1, 1, 1)
        loss = ((self.syn_by_class() - means.unsqueeze(1)) ** 2).mean()
        self.opt_img.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_img.step()
        return {"loss": loss.detach()}


@register_scorer("toy_norm")
def toy_norm(model, real, scfg):
    return real.images[:].flatten(1).norm(dim=1)
'''

METHOD_YAML = """
defaults:
  - base_toy_mean
  - _self_
name: toy_mean
iterations: 3
"""

PRUNING_YAML = """
defaults:
  - loss
  - _self_
name: toy_norm
criterion: toy_norm
ratio: 0.5
"""


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "toy_dfdistill_plugin.py").write_text(textwrap.dedent(PLUGIN))
    for group, text in (("method", METHOD_YAML), ("pruning", PRUNING_YAML)):
        (tmp_path / "conf" / group).mkdir(parents=True)
        (tmp_path / "conf" / group / f"toy_{'mean' if group == 'method' else 'norm'}.yaml").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setenv("DFDISTILL_PLUGINS", "toy_dfdistill_plugin")
    yield tmp_path
    METHODS.unregister("toy_mean")
    SCORERS.unregister("toy_norm")
    sys.modules.pop("toy_dfdistill_plugin", None)


def test_toy_method_and_scorer_run_end_to_end_from_outside_the_package(toy_plugin, tmp_path):
    from omegaconf import open_dict

    from dfdistill.config.resolve import resolve_config
    from dfdistill.data.datasets import load_dataset
    from dfdistill.run.pipeline import run

    overrides = [f"hydra.searchpath=[file://{toy_plugin / 'conf'}]", "method=toy_mean", "pruning=toy_norm",
                 "dataset=digits", "ipc=1", "profile=smoke", "logger=none", "eval.compare_random=false"]
    cfg = compose_run_config(overrides)
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "run")
        cfg.progress = False
    rec = run(cfg)
    assert rec["method"] == "toy_mean" and 0.0 <= rec["acc_mean"] <= 1.0 and rec["iterations"] == 3
    assert method_label("toy_mean") == "Toy mean"
    # the toy scorer chose the rows: per class, the half with the smallest pixel norms
    train, _ = load_dataset(resolve_config(cfg).dataset, cache_dir=tmp_path / "cache")
    norms = train.images[:].flatten(1).norm(dim=1)
    kept = set(rec["pruning_info"]["kept_source_index"])
    for ix in train.class_indices:
        k = ix.numel() - int(0.5 * ix.numel())
        expected = ix[torch.argsort(norms[ix], stable=True)[:k]]
        assert set(train.source_index[expected].tolist()) <= kept
    assert len(kept) == sum(ix.numel() - int(0.5 * ix.numel()) for ix in train.class_indices)
