"""Turn a composed Hydra config into a validated, profile-applied one.

The profile only scales sizes and counts: it writes its non-null values into the corresponding
method/eval/backbone/dataset keys *before* validation, so results.jsonl records the values that
actually ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dfdistill.config.schema import DatasetConfig, EvalConfig, LoggerConfig, ProfileConfig
from dfdistill.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Keys that do not change what is computed (excluded from the run's identity hash).
NON_SEMANTIC_KEYS = ("resume", "force", "progress", "logger", "output_dir", "cache_dir", "device", "log_every")


def _typed(schema: type, node: Any, group: str) -> Any:
    """Merge `node` into the schema and instantiate it so `__post_init__` range checks run."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid {group} config: {str(exc).splitlines()[0]}") from None


def method_class(cfg: DictConfig) -> type:
    target = cfg.method.get("_target_")
    if not target:
        raise ConfigError("method config has no _target_; pick a method with method=<name>")
    try:
        return get_class(target)
    except Exception as exc:  # hydra wraps import errors
        raise ConfigError(f"method _target_ {target!r} cannot be imported: {exc}") from None


def apply_profile(cfg: DictConfig) -> None:
    """Write the profile's non-null knobs into the groups they scale (in place)."""
    p = cfg.profile
    with open_dict(cfg):
        if p.get("iterations") is not None and "iterations" in cfg.method and cfg.method.iterations > 0:
            cfg.method.iterations = min(int(cfg.method.iterations), int(p.iterations))
        if p.get("batch_real") is not None and "batch_real" in cfg.method:
            cfg.method.batch_real = min(int(cfg.method.batch_real), int(p.batch_real))
        if p.get("eval_epochs") is not None:
            cfg.eval.epochs = int(p.eval_epochs) if cfg.eval.epochs is None else min(int(cfg.eval.epochs), int(p.eval_epochs))
        if p.get("num_eval") is not None:
            cfg.eval.num_eval = min(int(cfg.eval.num_eval), int(p.num_eval))
        if p.get("width") is not None and "width" in cfg.backbone:
            cfg.backbone.width = int(p.width)
        if p.get("width") is not None and "feature_width" in cfg.method:  # a method's own networks (RFAD)
            cfg.method.feature_width = min(int(cfg.method.feature_width), int(p.width))
        for key in ("max_train_per_class", "max_test"):
            if p.get(key) is not None:
                cur = cfg.dataset.get(key)
                cfg.dataset[key] = int(p[key]) if cur is None else min(int(cur), int(p[key]))
        # the methods' own `expert_epochs` is the matched span and is not a size to scale.
        for key, mkey in (("num_experts", "num_experts"), ("expert_train_epochs", "expert_train_epochs")):
            if p.get(key) is not None and mkey in cfg.method:
                cfg.method[mkey] = min(int(cfg.method[mkey]), int(p[key]))
        if p.get("expert_train_epochs") is not None and "expert_epochs" in cfg.method:  # shortened experts: span must fit
            cfg.method.expert_epochs = min(int(cfg.method.expert_epochs), int(cfg.method.expert_train_epochs))
        if p.get("scoring_epochs") is not None and "epochs" in cfg.pruning:
            cfg.pruning.epochs = [e for e in cfg.pruning.epochs if e <= int(p.scoring_epochs)] or [int(p.scoring_epochs)]
        if p.get("match_steps") is not None and isinstance(cfg.method.get("match_steps"), int):
            cfg.method.match_steps = min(int(cfg.method.match_steps), int(p.match_steps))
        if p.get("checkpoint_every") is not None:
            cfg.checkpoint_every = int(p.checkpoint_every)


def resolve_config(cfg: DictConfig) -> DictConfig:
    """Apply the profile, validate every group, return a fully resolved plain DictConfig."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    missing = [k for k in ("dataset", "backbone", "method", "eval", "profile") if k not in cfg]
    if missing:
        raise ConfigError(f"config is missing groups {missing}; run through run.py or compose conf/config.yaml")
    apply_profile(cfg)
    from dfdistill.config.schema import RunConfig

    top = {k: v for k, v in cfg.items() if not OmegaConf.is_config(v) or k == "tags"}
    _typed(RunConfig, {**top, **{g: {} for g in ("dataset", "backbone", "method", "pruning", "eval", "profile", "logger")}}, "top-level")
    _typed(DatasetConfig, cfg.dataset, "dataset")
    _typed(EvalConfig, cfg.eval, "eval")
    _typed(ProfileConfig, cfg.profile, "profile")
    _typed(LoggerConfig, cfg.logger, "logger")
    cls = method_class(cfg)
    _typed(cls.config_cls, cfg.method, "method")
    pruning = cfg.get("pruning") or {}
    static = pruning.get("_target_") and (pruning.get("ratio", 0) or pruning.get("stratum"))
    if pruning.get("adaptive") and not cls.supports_adaptive and not static:  # with a static half: that half runs
        raise ConfigError(f"method {cfg.method.get('name')} has no real-batch matching step for in-loop (ITE) pruning "
                          f"(pruning={cfg.pruning.get('name')}); use pruning=loss or random (static), or a method among "
                          "dc, dsa, dm, idc, idm, dfcolearn, edd")
    if cfg.dataset.get("root") in ("???",):
        raise ConfigError(f"dataset.root is required for dataset={cfg.dataset.name}: add dataset.root=/path/to/data")
    return cfg


def method_config(cfg: DictConfig) -> Any:
    cls = method_class(cfg)
    return _typed(cls.config_cls, cfg.method, "method")


def identity(cfg: DictConfig) -> dict:
    """The part of the config that determines the result (for resume/skip decisions)."""
    d = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in d.items() if k not in NON_SEMANTIC_KEYS and k != "hydra"}
