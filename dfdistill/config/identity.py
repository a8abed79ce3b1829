"""Run identities, in one module: which parts of the effective config decide what a run computes.

Committed results, checkpoints and caches are found by these keys, so their bytes must never change
for an existing config (tests/unit/config/test_identity_pins.py pins them). They hash the resolved
DictConfig (not the typed objects): the DictConfig holds exactly the keys every stored run hashed.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from dfdistill.core.artifacts import config_key
from dfdistill.core.errors import ConfigError
from dfdistill.schema.options import method_entry

# Keys that do not change what is computed (excluded from every identity hash).
NON_SEMANTIC_KEYS = ("resume", "force", "progress", "logger", "output_dir", "cache_dir", "device", "log_every",
                     "checkpoint_every", "cli_overrides", "provenance", "print_config", "memory", "compile",
                     "ensemble")
# Keys that say which stage runs and how a set is evaluated: outside the distillation's identity.
EVAL_KEYS = ("stage", "synthetic", "eval")


def dataset_identity(dataset: Any) -> Any:
    """The dataset node as identities hash it. `zca_mode` is left out where it changes nothing (zca off)
    and where it is kornia, the one convention every run computed before the key existed: the key
    then adds nothing to what ran, and those runs keep their identities. Only rfad whitening shows."""
    if not isinstance(dataset, dict) or "zca_mode" not in dataset:
        return dataset
    if dataset.get("zca") and dataset["zca_mode"] != "kornia":
        return dataset
    return {k: v for k, v in dataset.items() if k != "zca_mode"}


def method_identity(method: Any) -> Any:
    """The method node as identities hash it: with the registered class path as `_target_`, the key
    the method YAMLs spelled until the registry owned the class (committed runs keep their keys)."""

    if not isinstance(method, dict) or method.get("_target_") or "name" not in method:
        return method
    try:
        return {**method, "_target_": method_entry(str(method["name"])).meta["target"]}
    except ConfigError:  # an unknown name: validate() says so; the identity hashes what is there
        return method


def identity(cfg: DictConfig) -> dict:
    """The distillation's identity: what determines the synthetic set (checkpoint tag, resume decisions).

    Stage, evaluation protocol and cross-architecture list are outside it, so `stage=distill` then
    `stage=all`, or another `eval=`, continue the same distillation instead of redoing it."""
    return identity_of(OmegaConf.to_container(cfg, resolve=True))


def identity_of(d: dict) -> dict:
    """`identity` of a resolved config already converted to a dict (left unmodified): planning takes
    one conversion for every key of a job."""
    out = {k: v for k, v in d.items() if k not in NON_SEMANTIC_KEYS + EVAL_KEYS and k != "hydra"}
    if "dataset" in out:
        out["dataset"] = dataset_identity(out["dataset"])
    if "method" in out:
        out["method"] = method_identity(out["method"])
    return out


def eval_identity(cfg: DictConfig) -> dict:
    """What determines an evaluation of a given set: protocol (incl. the method's eval defaults and the
    cross-arch list), backbone, test data, seed, and the real data/IPC the random baseline draws from."""
    return eval_identity_of(OmegaConf.to_container(cfg, resolve=True))


def eval_identity_of(d: dict) -> dict:
    """`eval_identity` of a resolved config already converted to a dict (left unmodified)."""
    m = d.get("method") or {}
    return {"eval": d.get("eval"), "method_eval": {k: m.get(k) for k in ("eval_aug", "eval_lr")},
            "backbone": d.get("backbone"), "dataset": dataset_identity(d.get("dataset")), "pruning": d.get("pruning"),
            "ipc": d.get("ipc"), "seed": d.get("seed")}


def result_key(set_key: str, cfg: DictConfig) -> str:
    """results.jsonl's `config_key`: this evaluation of the set `set_key` (a distillation key or content hash)."""
    return _result_key_of(set_key, OmegaConf.to_container(cfg, resolve=True))


def distill_key(cfg: DictConfig) -> str:
    """The distillation's key (checkpoint tag, finished-distillation index): `identity` hashed."""
    return config_key(identity(cfg))


def own_result_key(d: dict) -> str:
    """`result_key(distill_key(cfg), cfg)` of a resolved config already converted to a dict: the
    config_key of a run that evaluates its own distillation (what sweep planning looks up)."""
    return _result_key_of(config_key(identity_of(d)), d)


def _result_key_of(set_key: str, d: dict) -> str:
    return config_key({"set": set_key, "eval": eval_identity_of(d)})


def inputs_identity(cfg: DictConfig) -> dict[str, Any]:
    """What produced a run's real data and model factory (dataset, backbone), for methods' cache keys
    (expert trajectories) and the scores cache."""
    return {"dataset": dataset_identity(OmegaConf.to_container(cfg.dataset, resolve=True)),
            "backbone": OmegaConf.to_container(cfg.backbone, resolve=True)}
