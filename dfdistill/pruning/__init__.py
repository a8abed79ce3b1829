"""Data pruning/filtering in front of (static) and inside (adaptive) distillation.

`apply_static_pruning` returns the kept RealData subset (same kept indices for every stage);
`build_adaptive` returns the in-loop selector (BiLP's ITE) or None.
Options: conf/pruning/{none,random,loss,ite,bilp}.yaml -> dfdistill.pruning.static / .ite.
"""

from __future__ import annotations

from typing import Any, Optional

from dfdistill.data.real import RealData


def apply_static_pruning(cfg, train: RealData, factory, cache, device) -> tuple[RealData, dict[str, Any]]:
    name = cfg.pruning.name
    if name == "none" or cfg.pruning.get("_target_") is None:
        return train, {"kept": len(train)}
    from hydra.utils import get_class

    pruner = get_class(cfg.pruning._target_)
    return pruner.apply(cfg, train, factory, cache, device)


def build_adaptive(cfg, train: RealData) -> Optional[Any]:
    adaptive = cfg.pruning.get("adaptive")
    if not adaptive:
        return None
    from hydra.utils import get_class

    return get_class(adaptive._target_).from_config(cfg, train)
