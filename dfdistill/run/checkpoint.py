"""The distillation checkpoint: synthetic-set state + every RNG + loss history, written atomically.

Why: a killed run (SIGKILL, preemption, Ctrl-C) must resume bit-identically, so the checkpoint holds
the distiller's state *and* the torch/numpy/python RNG streams, tagged with the distillation's
identity key: a run dir never silently continues a checkpoint of another config. Continuing one
under a changed config (e.g. a lower lr after a NaN) is explicit -- `resume=<that run dir>` -- and
is recorded as such in the new run's results (`continued_from`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from dfdistill.core.artifacts import CorruptArtifact, load_tensor_file, save_tensor_file
from dfdistill.core.errors import ConfigError
from dfdistill.core.log import log
from dfdistill.methods.base import Distiller

CHECKPOINT_FILE = "checkpoint.pt"

# What `resume=<dir>` may change in the distillation's identity: how the optimisation goes on (learning
# rates of what is optimised, how long, how often it is saved), not what is optimised. Anything else
# (method, dataset, ipc, seed, backbone, pruning, ...) makes the checkpoint another distillation.
RESUMABLE_KEYS = ("method.lr_img", "method.lr_lr", "method.lr_net", "method.lr_label", "method.lr_transform",
                  "method.lr_platt", "method.mask_lr", "method.unroll_lr", "method.filter_lr", "method.iterations",
                  "profile.iterations", "checkpoint_every", "profile.checkpoint_every", "log_every")


def rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(out_dir: Path, key: str, it: int, distiller: Distiller, history: list[dict],
                    identity: Optional[dict] = None, continued_from: Optional[dict] = None) -> None:
    sel = distiller.ctx.adaptive  # the in-loop selector's running statistics / lazy decisions, beside the distiller
    save_tensor_file(out_dir / CHECKPOINT_FILE, {"config_key": key, "iteration": it, "distiller": distiller.state_dict(),
                                                 "adaptive": sel.state_dict() if sel is not None else None,
                                                 "rng": rng_state(), "history": history, "identity": identity,
                                                 "continued_from": continued_from})


def read_checkpoint(path: Path) -> Optional[dict]:
    """The checkpoint at `path`, None when absent; an unreadable one is moved aside (never deleted)."""
    if not path.exists():
        return None
    try:
        return load_tensor_file(path)
    except (CorruptArtifact, EOFError, RuntimeError) as exc:
        bad = path.with_suffix(".corrupt")
        path.replace(bad)
        log.info(f"checkpoint {path} unreadable ({exc}); moved to {bad.name}, starting fresh")
        return None


def load_checkpoint(out_dir: Path, key: str, allow_other_config: bool = False,
                    identity: Optional[dict] = None) -> Optional[dict]:
    """This run's own checkpoint; one written by another config is refused unless `resume=` names this dir
    (offered only when `identity`, the current config's, differs from its own in RESUMABLE_KEYS alone)."""
    path = out_dir / CHECKPOINT_FILE
    ck = read_checkpoint(path)
    if ck is not None and ck.get("config_key") != key and not allow_other_config:
        changed = changed_keys(ck.get("identity"), identity) if identity is not None else {}
        other = [k for k in changed if k not in RESUMABLE_KEYS]
        if other:
            raise ConfigError(f"{path} belongs to another distillation (it differs in {', '.join(other[:8])}"
                              f"{' ...' if len(other) > 8 else ''}); use another output dir (hydra.run.dir=...) "
                              "or delete the checkpoint")
        raise ConfigError(f"{path} belongs to a different config; use another output dir (hydra.run.dir=...), "
                          f"continue it under this config with resume={out_dir}, or delete the checkpoint")
    return ck


def check_resumable(ck: dict, identity: dict, source: Path) -> dict[str, list]:
    """The keys a `resume=` checkpoint changes ({key: [old, new]}); a ConfigError naming them when any is
    outside RESUMABLE_KEYS (continuing it would label another distillation's set as this config's)."""
    if not isinstance(ck.get("identity"), dict):
        raise ConfigError(f"resume={source}: its {CHECKPOINT_FILE} does not record the config it was made with, so "
                          "it cannot be checked against this one; drop resume= (or rerun that run's own command)")
    changed = changed_keys(ck["identity"], identity)
    # the telling keys first: top-level ones (seed, ipc), then each group's name
    other = sorted((k for k in changed if k not in RESUMABLE_KEYS),
                   key=lambda k: (k.count("."), not k.endswith(".name"), k))
    if other:
        shown = ", ".join([f"{k} ({changed[k][0]} -> {changed[k][1]})" for k in other[:3]] + other[3:10])
        more = f" and {len(other) - 10} more" if len(other) > 10 else ""
        raise ConfigError(f"resume={source} is another distillation: it differs in {shown}{more}; resume= continues "
                          "a run only under other learning rates, iterations or checkpoint cadence "
                          "(dfdistill.run.checkpoint.RESUMABLE_KEYS); type that run's values, or drop resume=")
    return changed


def restore(distiller: Distiller, ck: dict) -> None:
    """Load a checkpoint into an initialised distiller (+ its selector) and the global RNGs."""
    try:
        distiller.load_state_dict(ck["distiller"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ConfigError(f"the checkpoint does not fit this config ({str(exc).splitlines()[0][:120]}); resume= only "
                          "continues a run of the same method, dataset, ipc and backbone") from None
    if distiller.ctx.adaptive is not None and ck.get("adaptive") is not None:
        distiller.ctx.adaptive.load_state_dict(ck["adaptive"])
    set_rng_state(ck["rng"])


def optimizer_lrs(obj: Any) -> dict[str, list[float]]:
    """The current lr of every param group of every optimizer attribute (e.g. opt_img, opt_lr)."""
    return {name: [g["lr"] for g in opt.param_groups] for name, opt in vars(obj).items()
            if isinstance(opt, torch.optim.Optimizer)}


def set_optimizer_lrs(obj: Any, lrs: dict[str, list[float]]) -> None:
    """Put the config's lrs back after loading optimizer states (which carry the old run's lrs)."""
    for name, values in lrs.items():
        for g, lr in zip(getattr(obj, name).param_groups, values):
            g["lr"] = lr


def changed_keys(old: Optional[dict], new: dict, prefix: str = "") -> dict[str, list]:
    """Dotted keys whose values differ between two identity dicts: {'method.lr_img': [old, new]}."""
    if not isinstance(old, dict):
        return {}
    out: dict[str, list] = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(changed_keys(a, b, f"{prefix}{k}."))
        elif a != b:
            out[f"{prefix}{k}"] = [a, b]
    return out
