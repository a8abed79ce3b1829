"""The per-sample criteria a scoring trial reads from its network: one registered function each.

Adding a criterion is a function here (or in a new module of this package) with
`@register_scorer("name")`, plus a pruning YAML that selects it (`criterion: name`).
Each function gets the network at a read-out epoch and returns (N,) scores for `real`'s rows.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dfdistill.data.real import RealData
from dfdistill.core.registry import register_scorer
from dfdistill.scoring.gradnorm import hardness, per_sample_loss, per_sample_loss_and_grad_norm


def _loss_and_grad_norm(model: nn.Module, real: RealData, scfg: Any) -> tuple[Tensor, Tensor]:
    was = model.training
    model.eval()  # single-sample gradients: BatchNorm must use its running statistics
    try:
        return per_sample_loss_and_grad_norm(model, real.images, real.labels, chunk=scfg.chunk)
    finally:
        model.train(was)


@register_scorer("loss")
def empirical_loss(model: nn.Module, real: RealData, scfg: Any) -> Tensor:
    """BiLP §4.1: the per-sample cross-entropy."""
    return per_sample_loss(model, real.images, real.labels)


@register_scorer("grad_norm")
def gradient_norm(model: nn.Module, real: RealData, scfg: Any) -> Tensor:
    """||d CE_i / d theta||_2 of every sample."""
    return _loss_and_grad_norm(model, real, scfg)[1]


@register_scorer("hardness")
def hardness_score(model: nn.Module, real: RealData, scfg: Any) -> Tensor:
    """DF-CoLearn eq. 4: kappa = alpha * loss + (1 - alpha) * grad norm."""
    loss, gn = _loss_and_grad_norm(model, real, scfg)
    return hardness(loss, gn, scfg.alpha)
