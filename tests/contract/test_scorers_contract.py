"""Contract of the scorer registry: every registered criterion scores a toy set with one finite value
per row, deterministically, from the network it is given (a new `@register_scorer` gets this case)."""

from __future__ import annotations

import pytest
import torch

from dfdistill.data.real import RealData
from dfdistill.models import build_model
from dfdistill.core.registry import SCORERS
from dfdistill.scoring.empirical import ScoringConfig

N_PER_CLASS = 5


def toy() -> RealData:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * N_PER_CLASS, 3, 8, 8, generator=g)
    y = torch.arange(2).repeat_interleave(N_PER_CLASS)
    return RealData(x, y, 2, ["a", "b"], (0.5,) * 3, (0.5,) * 3, name="toy", pixels=True)


def net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("convnet", 3, 2, 8, width=8, depth=1)


@pytest.mark.parametrize("name", SCORERS.names())
def test_every_scorer_gives_one_finite_score_per_row(name):
    real, fn, scfg = toy(), SCORERS.get(name).obj, ScoringConfig(criterion=name)
    model = net(0)
    scores = fn(model, real, scfg)
    assert scores.shape == (len(real),) and scores.dtype.is_floating_point and torch.isfinite(scores).all()
    assert torch.equal(fn(model, real, scfg), scores)  # same network, same scores
    assert not torch.equal(fn(net(1), real, scfg), scores)  # read from the network, not the data alone
    assert model.training  # the scorer leaves the network's mode as it found it
