"""Register one structured-config schema per group option with Hydra's ConfigStore.

Each YAML option lists its schema first in its own defaults (e.g. `method/dc.yaml` starts with
`- base_dc`), so types and unknown keys are checked at compose time (the form Hydra 1.4 keeps).
Method schemas come from the method registry, backbone schemas from the backbone constructors'
signatures, so a new method or backbone needs no edit here.
"""

from __future__ import annotations

import inspect
from dataclasses import field, make_dataclass
from functools import lru_cache
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from dfdistill.schema.groups import DatasetConfig, EvalConfig, LoggerConfig, ProfileConfig
from dfdistill.models import MODELS
from dfdistill.pruning.config import PruningConfig
from dfdistill.core.registry import METHODS
from dfdistill.core.rundir import register_resolvers
from dfdistill.models import convnet_depth

_SHAPE_ARGS = ("channels", "num_classes", "image_size")
_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}


@lru_cache(maxsize=None)
def backbone_schema(name: str) -> type:
    """A dataclass of backbone `name`'s constructor options (defaults from its signature/partial)."""

    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=name)),
                                          ("_target_", Optional[str], field(default=None))]
    for p in inspect.signature(MODELS.get(name).obj).parameters.values():
        if p.name in _SHAPE_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = p.default if p.default is not inspect.Parameter.empty else None
        ann = _SIMPLE.get(p.annotation, p.annotation)  # string annotations under `from __future__`
        ann = ann if ann in (int, float, bool, str) else type(default) if default is not None else Any
        fields.append((p.name, ann, field(default=default)))
    schema = make_dataclass(f"Backbone_{name}", fields)
    if schema.__name__.isidentifier():  # findable by pickle, so a composed config pickles (sweep planning copies it so)
        schema.__module__ = __name__
        globals().setdefault(schema.__name__, schema)
    return schema


_registered: Optional[tuple] = None


def register_configs() -> None:
    """Idempotent; registers again only when a method or backbone was added since (each store call
    converts a dataclass: done per composition, it was a fifth of a sweep plan's time)."""
    global _registered

    if _registered == (tuple(e.name for e in METHODS), tuple(MODELS.names())):
        return
    register_resolvers()  # conf/config.yaml's hydra.run.dir / sweep.dir use them
    cs = ConfigStore.instance()
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="eval", name="base_eval", node=EvalConfig)
    cs.store(group="profile", name="base_profile", node=ProfileConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="pruning", name="base_pruning", node=PruningConfig)
    for entry in METHODS:
        cs.store(group="method", name=f"base_{entry.name}", node=entry.meta["config"])
    for name in MODELS.names():
        cs.store(group="backbone", name=f"base_{name}", node=backbone_schema(name))
    # ${convnet_depth:${dataset.image_size}}: the ConvNet depth the papers use at that input size

    OmegaConf.register_new_resolver("convnet_depth", convnet_depth, replace=True)
    _registered = (tuple(e.name for e in METHODS), tuple(MODELS.names()))
