"""Contract of the backbone registry: every registered constructor builds from its YAML's options at its
default size and maps a small batch to (batch, num_classes) finite logits; its YAML names the class the
registry says it builds (a new `@register` in dfdistill/models gets these cases)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from dfdistill.schema.options import load_option
from dfdistill.models import MODELS, build_model
from dfdistill.models.factory import backbone_options

# The smallest input each family takes at its default depth (ConvNet-3 pools to 4x4 from 32 px).
SIZE = 32


@pytest.mark.parametrize("name", MODELS.names())
def test_every_backbone_gives_logits_at_its_default_size(name):
    node = load_option("backbone", name)
    opts = backbone_options(OmegaConf.create({k: v for k, v in OmegaConf.to_container(node).items()
                                              if not (isinstance(v, str) and v.startswith("${"))}))
    torch.manual_seed(0)
    model = build_model(name, 3, 5, SIZE, **opts).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, SIZE, SIZE))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_backbone_yaml_names_the_registered_class(name):
    assert load_option("backbone", name).get("_target_") == MODELS.get(name).meta["target"]
