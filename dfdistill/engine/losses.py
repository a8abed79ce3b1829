"""Training losses shared by every layer (methods, evaluation, expert and scoring training).

Why a module of its own: the evaluation protocol, IDC's network training and gradient matching all
use the same (soft-label-aware, weightable) cross-entropy and IDC's CutMix; keeping them here lets
`evaluation` and `methods` both import downwards instead of from each other.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def weighted_ce(logits: Tensor, y: Tensor, w: Optional[Tensor]) -> Tensor:
    """Mean CE, or the w-weighted mean sum(w*l)/sum(w) (eq. 5 of DF-CoLearn) when w is given.

    `y` may be hard labels (int) or soft targets (float, same shape as logits)."""
    if y.dtype.is_floating_point:
        per = -(y * F.log_softmax(logits, -1)).sum(-1)
    else:
        per = F.cross_entropy(logits, y, reduction="none")
    if w is None:
        return per.mean()
    return (per * w).sum() / w.sum().clamp_min(1e-12)


def _cutmix(x: Tensor, y: Tensor, beta: float, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
    """CutMix (IDC eval): paste a box from a permuted partner; loss mixed by box area."""
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen))).beta(beta, beta))
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    H, W = x.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(H * cut), int(W * cut)
    cy, cx = [int(v) for v in torch.randint(0, H, (1,), generator=gen).tolist() + torch.randint(0, W, (1,), generator=gen).tolist()]
    y1, y2, x1, x2 = max(cy - ch // 2, 0), min(cy + ch // 2, H), max(cx - cw // 2, 0), min(cx + cw // 2, W)
    x = x.clone()
    x[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    lam = 1 - ((y2 - y1) * (x2 - x1) / (H * W))
    return x, y, y[perm], lam


def cutmix_draw(x: Tensor, y: Tensor, prob: float, beta: float,
                gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
    """With probability `prob` the batch's CutMix (mixed x, labels, partner labels, lam = kept area),
    else (x, y, y, 1.0); no draw at all when prob is 0."""
    if prob > 0 and float(torch.rand((), generator=gen)) < prob:
        return _cutmix(x, y, beta, gen)
    return x, y, y, 1.0


def cutmix_or_plain_loss(model: nn.Module, x: Tensor, y: Tensor, prob: float, beta: float,
                         gen: torch.Generator) -> Tensor:
    """CE on the batch, or with probability `prob` CE on its CutMix (loss mixed by box area)."""
    x, ya, yb, lam = cutmix_draw(x, y, prob, beta, gen)
    if lam == 1.0:
        return weighted_ce(model(x), ya, None)
    out = model(x)
    return lam * weighted_ce(out, ya, None) + (1 - lam) * weighted_ce(out, yb, None)
