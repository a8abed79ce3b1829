"""Data pruning/filtering in front of (static) and inside (adaptive) distillation.

`apply_static_pruning` returns the kept RealData subset (same kept indices for every stage);
`build_adaptive` returns the in-loop selector (BiLP's ITE) or None.
Options: conf/pruning/{none,random,loss,ite,bilp}.yaml -> the registered pruners (`@register_pruner`:
dfdistill.pruning.static / .ite), found by the YAML's `_target_`.
"""

from __future__ import annotations

from typing import Any, Optional

from dfdistill.data.real import RealData
from dfdistill.registry import pruner_class


def apply_static_pruning(cfg, train: RealData, factory, cache, device) -> tuple[RealData, dict[str, Any]]:
    name = cfg.pruning.name
    if name == "none" or cfg.pruning.get("_target_") is None:
        return train, {"kept": len(train)}
    pruner = pruner_class(cfg.pruning._target_, adaptive=False)
    return pruner.apply(cfg, train, factory, cache, device)


def build_adaptive(cfg, train: RealData) -> Optional[Any]:
    adaptive = cfg.pruning.get("adaptive")
    if not adaptive:
        return None
    return pruner_class(adaptive._target_, adaptive=True).from_config(cfg, train)
