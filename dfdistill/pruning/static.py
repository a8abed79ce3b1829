"""Static (preemptive) pruning before distillation: class-balanced random or score-based.

`ratio` is the fraction dropped PER CLASS (the BiLP reference `drop_ratio`, "ratio to drop for each
class"): class c keeps exactly ceil((1 - ratio) * n_c) rows (= n_c - floor(ratio * n_c), the
reference's count). `keep: low` keeps the lowest scores (BiLP Alg. 1 line 2: D'_r = {l(x) < tau},
i.e. drop high-loss samples; README: LossConverge_large works best); `keep: high` is the ablation.
The pipeline prunes once, before the experts and the distillation stage, so both see the same
kept rows; `RealData.subset` keeps `source_index` pointing at the original split.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from dfdistill.core.artifacts import config_key
from dfdistill.data.real import RealData
from dfdistill.pruning.config import PruningConfig
from dfdistill.core.registry import register_pruner
from dfdistill.scoring.empirical import cached_scores

KEEP_LIST_MAX = 5000


def kept_count(n: int, ratio: float) -> int:
    """ceil((1 - ratio) * n) computed as n - floor(ratio * n) (exact for float ratios like 0.9)."""
    return n - int(math.floor(ratio * n + 1e-9))


def class_balanced_keep(real: RealData, ratio: float, scores: Optional[Tensor] = None, keep: str = "low",
                        gen: Optional[torch.Generator] = None) -> Tensor:
    """Sorted row positions kept: per class `kept_count(n_c, ratio)` rows, random or by score."""
    out = []
    for ix in real.class_indices:
        k = kept_count(ix.numel(), ratio)
        if scores is None:
            order = torch.randperm(ix.numel(), generator=gen).to(ix.device)
        else:
            s = scores.to(ix.device)[ix]
            order = torch.argsort(s if keep == "low" else -s, stable=True)
        out.append(ix[order[:k]])
    return torch.sort(torch.cat(out)).values


def stratum_rows(real: RealData, scores: Tensor, stratum: int, n_strata: int) -> Tensor:
    """BiLP Fig. 3: per class, sort by score from large to small, split in n_strata parts; S1 = largest."""
    out = []
    for ix in real.class_indices:
        order = torch.argsort(-scores.to(ix.device)[ix], stable=True)
        out.append(ix[torch.tensor_split(order, n_strata)[stratum - 1]])
    return torch.sort(torch.cat(out)).values


def real_scores(pcfg: PruningConfig, train: RealData, factory, cache, seed: int, inputs: dict) -> Tensor:
    """Per-sample scores from networks seeded with seed + seed_offset (a removal trial of BiLP
    Table 2 re-estimates the loss with other networks; the distillation seed stays the same).
    `inputs`: the run's {'dataset', 'backbone'} (ResolvedRun.inputs), which key the scores cache."""
    out = cached_scores(train, factory, pcfg.scoring(), int(seed) + pcfg.seed_offset, cache, inputs["dataset"]["name"],
                        inputs["backbone"])
    return out["scores"].to(train.device)


def _info(train: RealData, kept: RealData, pcfg: PruningConfig, scored: bool = True) -> dict[str, Any]:
    """What was kept; `keep`/`criterion` only when scores chose it (random pruning has neither)."""
    how = {"keep": pcfg.keep, "criterion": pcfg.criterion} if scored else {"criterion": "random"}
    info = {"kept": len(kept), "total": len(train), "ratio": pcfg.ratio, **how,
            "kept_per_class": kept.class_counts(), "kept_source_hash": config_key(kept.source_index)}
    if len(kept) <= KEEP_LIST_MAX:  # the full list only when it keeps results.jsonl readable
        info["kept_source_index"] = kept.source_index.cpu().tolist()
    return info


@register_pruner("random", label="random pruning")
class RandomPruning:
    """pruning=random: class-balanced uniform drop (reference 'Random' criterion)."""

    @staticmethod
    def apply(pcfg: PruningConfig, train: RealData, factory, cache, seed: int,
              inputs: dict) -> tuple[RealData, dict[str, Any]]:
        gen = torch.Generator().manual_seed(int(seed) + pcfg.seed_offset)
        kept = train.subset(class_balanced_keep(train, pcfg.ratio, None, gen=gen))
        return kept, _info(train, kept, pcfg, scored=False)


@register_pruner("loss", label="loss pruning")
class ScorePruning:
    """pruning=loss (and bilp's preemptive half): drop by cached per-sample scores."""

    @staticmethod
    def apply(pcfg: PruningConfig, train: RealData, factory, cache, seed: int,
              inputs: dict) -> tuple[RealData, dict[str, Any]]:
        if pcfg.ratio == 0.0 and pcfg.stratum is None:
            return train, _info(train, train, pcfg)
        scores = real_scores(pcfg, train, factory, cache, seed, inputs)
        if pcfg.stratum is not None:
            rows = stratum_rows(train, scores, pcfg.stratum, pcfg.n_strata)
        else:
            rows = class_balanced_keep(train, pcfg.ratio, scores, pcfg.keep)
        kept = train.subset(rows)
        info = _info(train, kept, pcfg)
        info["score_mean_kept"] = float(scores[rows].mean())
        return kept, info
