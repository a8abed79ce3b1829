"""BiLP §5.5 / Fig. 4: the diversity of each loss stratum (intra-class / inter-class variance).

"We conduct similar stratified experiments as Sec. 5.4 and use the quotient of intraclass variance
and interclass variance as the diversity metric (a large value indicates larger diversity)."
Strata are BiLP Fig. 3's (`pruning.static.stratum_rows`: per class, sorted from large to small
loss, S1 = largest). Pure functions of the data, the scores and an embedding callable: the caller
(scripts/make_figure.py diversity) loads the data, computes the cached scores and chooses the
network, so this module imports nothing above the pruning layer. The paper does not say in which
space the variances are taken; the producer embeds with a freshly initialised backbone (seeded).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dfdistill.data.real import RealData
from dfdistill.pruning.static import stratum_rows


def diversity(emb: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """intra = mean over classes of the mean squared distance to the class mean; inter = variance of
    class means around the global mean; ratio = intra / inter (higher = more diverse within class)."""
    means, intra = [], []
    for c in range(num_classes):
        e = emb[labels == c]
        if e.shape[0] == 0:
            continue
        m = e.mean(0)
        means.append(m)
        intra.append(((e - m) ** 2).sum(1).mean())
    M = torch.stack(means)
    inter = ((M - M.mean(0)) ** 2).sum(1).mean()
    i = torch.stack(intra).mean()
    return {"intra": float(i), "inter": float(inter), "ratio": float(i / inter.clamp_min(1e-12))}


@torch.no_grad()
def stratum_diversity(real: RealData, scores: Tensor, n_strata: int,
                      embed: Callable[[Tensor], Tensor]) -> list[dict[str, float]]:
    """[{stratum, n, intra, inter, ratio}] for S1..S{n_strata}; `embed` maps images to features."""
    out = []
    for k in range(1, n_strata + 1):
        rows = stratum_rows(real, scores, k, n_strata)
        d = diversity(embed(real.images[rows]), real.labels[rows], real.num_classes)
        out.append({"stratum": k, "n": int(rows.numel()), **d})
    return out
