"""The max-ratio cell of BiLP Tables 1-2 (and Fig. 2's arrows): one rule, shared by the tables and
the search driver (`dfdistill.sweeps.search`), so the ratio the search stops at is the ratio the
table prints.

Rule, as read from the paper (§3.2 and §4.1, "Empirical Justification"): "we randomly drop some
portions of the real data to find their maximum pruning ratio that could maintain the distillation
accuracy" ... "We take the mean and standard deviation of the accuracy of 5 random removal trials."
The paper does not state how "maintain" is judged; we read it as: a pruning ratio r keeps the
accuracy when the mean over its removal trials is at least the unpruned mean minus the unpruned
std (within the unpruned run's noise). The cell is the LARGEST ratio tried that keeps it (not the
largest ratio below which every ratio keeps it: loss pruning often gains accuracy at high ratios).

Records are results.jsonl lines of ONE cell (one dataset, method, IPC and selection). Unpruned
records (pruning_ratio 0, i.e. pruning=none) form the baseline; every other record is one removal
trial at its ratio (trials differ in `pruning.seed_offset`). A trial's accuracy is its run's mean
over evaluation networks; a ratio's mean/std is over its trials. A single-trial baseline or ratio
uses that run's std over its evaluation networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from dfdistill.reporting.results import mean_std

RULE = "largest ratio whose mean over removal trials >= unpruned mean - unpruned std"


@dataclass(frozen=True)
class RatioStats:
    """Accuracy (fraction, not %) at one pruning ratio over its removal trials."""

    ratio: float
    mean: float
    std: float
    trials: int


@dataclass(frozen=True)
class MaxRatio:
    ratio: Optional[float]  # the cell (fraction); None without an unpruned baseline
    baseline: Optional[RatioStats]
    points: dict[float, RatioStats] = field(default_factory=dict)  # every pruned ratio tried
    keeps: dict[float, bool] = field(default_factory=dict)  # ratio -> keeps the unpruned accuracy
    rule: str = RULE

    @property
    def at_max(self) -> Optional[RatioStats]:
        """Accuracy at the max ratio (the baseline when no pruned ratio keeps it)."""
        if self.ratio is None:
            return None
        return self.points.get(self.ratio, self.baseline)


def ratio_stats(ratio: float, records: list[dict[str, Any]]) -> RatioStats:
    means = [float(r["acc_mean"]) for r in records]
    if len(means) == 1:
        return RatioStats(ratio, means[0], float(records[0].get("acc_std", 0.0) or 0.0), 1)
    m, s = mean_std(means)
    return RatioStats(ratio, m, s, len(means))


def keeps_accuracy(point: RatioStats, baseline: RatioStats) -> bool:
    return point.mean >= baseline.mean - baseline.std


def max_ratio(records: list[dict[str, Any]]) -> MaxRatio:
    """The cell of a max-ratio table from one cell's records (see the module docstring)."""
    by_ratio: dict[float, list[dict]] = {}
    for r in records:
        if r.get("acc_mean") is None or (isinstance(r["acc_mean"], float) and math.isnan(r["acc_mean"])):
            continue
        by_ratio.setdefault(round(float(r.get("pruning_ratio", 0.0) or 0.0), 6), []).append(r)
    base = by_ratio.pop(0.0, None)
    points = {q: ratio_stats(q, recs) for q, recs in sorted(by_ratio.items())}
    if not base:
        return MaxRatio(None, None, points, {})
    baseline = ratio_stats(0.0, base)
    keeps = {q: keeps_accuracy(p, baseline) for q, p in points.items()}
    best = max([q for q, ok in keeps.items() if ok], default=0.0)
    return MaxRatio(best, baseline, points, keeps)
