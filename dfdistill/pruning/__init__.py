"""Data pruning/filtering in front of (static) and inside (adaptive) distillation.

`apply_static_pruning` returns the kept RealData subset (same kept indices for every stage);
`build_adaptive` returns the in-loop selector (BiLP's ITE) or None. Both take the validated
PruningConfig (`ResolvedRun.pruning`), never the whole config.
Options: conf/pruning/{none,random,loss,ite,bilp}.yaml -> the registered pruners (`@register_pruner`:
dfdistill.pruning.static / .ite), found by the YAML's `_target_`.
"""

from __future__ import annotations

from typing import Any, Optional

from dfdistill.data.real import RealData
from dfdistill.pruning.config import PruningConfig
from dfdistill.core.registry import pruner_class


def apply_static_pruning(pcfg: PruningConfig, train: RealData, factory, cache, seed: int,
                         inputs: dict) -> tuple[RealData, dict[str, Any]]:
    """The kept rows; `inputs` ({'dataset', 'backbone'}: ResolvedRun.inputs) keys the scores cache."""
    if pcfg.name == "none" or pcfg._target_ is None:
        return train, {"kept": len(train)}
    return pruner_class(pcfg._target_, adaptive=False).apply(pcfg, train, factory, cache, seed, inputs)


def build_adaptive(pcfg: PruningConfig, train: RealData) -> Optional[Any]:
    """The in-loop selector `pruning.adaptive._target_` names, on the kept rows; None without one."""
    if not pcfg.adaptive:
        return None
    return pruner_class(pcfg.adaptive._target_, adaptive=True)(pcfg.adaptive, train)
