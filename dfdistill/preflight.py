"""Checks that turn a doomed run into one line *before* any work (and checks right after data loads).

Why here and not in the schemas: these relate the stage to its inputs, the file system (resume=, synthetic=), the environment (a W&B key) or the loaded data (classes, shapes),
which a per-group schema cannot see. Each message names the fix.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig

from dfdistill.checkpoint import CHECKPOINT_FILE
from dfdistill.data.real import RealData
from dfdistill.errors import ConfigError, DataError


def check_config(cfg: DictConfig) -> None:
    """Everything that can be checked from the config and the file system alone."""
    if cfg.resume:
        check_resume(str(cfg.resume))
    if cfg.stage == "eval" and not cfg.get("synthetic"):
        raise ConfigError("stage=eval needs the set to evaluate: add synthetic=<run dir or synthetic.pt>")
    if cfg.get("synthetic") and cfg.stage != "eval":
        raise ConfigError(f"synthetic= is read only by stage=eval (stage={cfg.stage}); add stage=eval to evaluate it")
    if cfg.stage == "eval":
        from dfdistill.synthetic import synthetic_path

        synthetic_path(cfg.synthetic)
    if cfg.logger.name == "wandb" and cfg.logger.mode == "online" and not wandb_key_available():
        raise ConfigError("logger.mode=online needs a W&B API key: run `wandb login` or set WANDB_API_KEY, "
                          "or use logger.mode=offline (sync later) or logger=none")


def check_resume(resume: str) -> None:
    p = Path(resume).expanduser()
    if not p.is_dir():
        raise ConfigError(f"resume={resume} does not exist; give the run dir that holds {CHECKPOINT_FILE} "
                          "(or drop resume= to start a new run)")
    if not (p / CHECKPOINT_FILE).exists():
        raise ConfigError(f"resume={resume} holds no {CHECKPOINT_FILE} to continue from; drop resume= to start a new run")


def wandb_key_available() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    for path in filter(None, [os.environ.get("NETRC"), str(Path.home() / ".netrc"), str(Path.home() / "_netrc")]):
        try:
            if netrc.netrc(path).authenticators(host):
                return True
        except (OSError, netrc.NetrcParseError):
            continue
    return False


def check_classes(real: RealData, dataset: str) -> None:
    """Distillation and the accuracy it reports need at least two classes."""
    if real.num_classes < 2:
        raise DataError(f"dataset={dataset} has {real.num_classes} class ({', '.join(real.class_names)}); "
                        "distillation needs at least 2 classes: add class folders under dataset.root")


def check_per_class(real: RealData, ipc: int, why: str) -> None:
    """Every class must hold `ipc` real rows where a real subset of that size is drawn (`why`)."""
    counts = real.class_counts()
    small = [(c, n) for c, n in enumerate(counts) if n < ipc]
    if small:
        c, n = small[0]
        raise DataError(f"class {real.class_names[c]!r} has {n} real images (after pruning), fewer than ipc={ipc}, "
                        f"so {why} would be smaller than IPC; lower ipc or pruning.ratio"
                        + (" or set eval.compare_random=false" if "baseline" in why else ""))


def check_trains(cfg: DictConfig) -> None:
    """A learning method with 0 iterations would report its untrained initial images under its own name;
    refused for an evaluated run (stage=distill with 0 saves the initial set, as scripts/make_figure.py does)."""
    from dataclasses import MISSING, fields

    from dfdistill.config.resolve import method_class

    default = {f.name: f.default for f in fields(method_class(cfg).config_cls)}.get("iterations", MISSING)
    learns = isinstance(default, int) and default > 0
    if learns and cfg.stage == "all" and int(cfg.method.get("iterations") or 0) == 0:
        raise ConfigError(f"method.iterations is 0, so {cfg.method.name} would report its untrained initial images as "
                          f"{cfg.method.name}'s result; give method.iterations >= 1 (or stage=distill to only save the "
                          "initial set, or method=random for a random real subset)")
