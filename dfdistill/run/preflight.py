"""Checks that turn a doomed run into one line *before* any work (and checks right after data loads).

Why here and not in the schemas: these relate the stage to its inputs, the file system (resume=, synthetic=), the environment (a W&B key) or the loaded data (classes, shapes),
which a per-group schema cannot see. Each message names the fix.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.config.resolve import dataset_of
from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError, DataError
from dfdistill.run.synthetic import synthetic_path
from dfdistill.core.artifacts import default_cache_dir
from dfdistill.config.resolve import is_typed, typed_overrides
from dfdistill.config.resolve import method_class
from dfdistill.data.loaders.torchvision_sets import missing

if TYPE_CHECKING:
    from dfdistill.config.resolved import ResolvedRun
    import torch


def check_config(cfg: DictConfig) -> None:
    """Everything that can be checked from the config and the file system alone."""
    if cfg.resume:
        check_resume(str(cfg.resume))
    if cfg.stage == "eval" and not cfg.get("synthetic"):
        raise ConfigError("stage=eval needs the set to evaluate: add synthetic=<run dir or synthetic.pt>")
    if cfg.get("synthetic") and cfg.stage != "eval":
        raise ConfigError(f"synthetic= is read only by stage=eval (stage={cfg.stage}); add stage=eval to evaluate it")
    if cfg.stage == "eval":

        synthetic_path(cfg.synthetic)
    check_cache_dir(cfg)
    if cfg.logger.name == "wandb" and cfg.logger.mode == "online" and not wandb_key_available():
        raise ConfigError("logger.mode=online needs a W&B API key: run `wandb login` or set WANDB_API_KEY, "
                          "or use logger.mode=offline (sync later) or logger=none")


def blocking_file(path: str | os.PathLike) -> Optional[Path]:
    """The first existing part of `path` that is a file (so no folder can be made there), or None."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    for part in [*reversed(p.parents), p]:
        if part.exists() and not part.is_dir():
            return part
    return None


def check_folder_setting(path: str | os.PathLike, setting: str, default: bool = False) -> None:
    """A folder setting (hydra.run.dir=, cache_dir=, DFDISTILL_CACHE) that points at or under a file;
    `default`: the path is the setting's default (the setting is unset)."""
    f = blocking_file(path)
    if f is not None:
        where = "is a file" if f == Path(os.path.abspath(Path(path).expanduser())) else f"lies under the file {f}"
        what = f"{path} (the default of {setting})" if default else f"{setting}={path}"
        raise ConfigError(f"{what} {where}, not a folder; set {setting} to a folder path")


def check_cache_dir(cfg: DictConfig) -> None:
    """The cache folder, naming the setting it came from (typed cache_dir=, $DFDISTILL_CACHE, or HOME)."""

    if cfg.get("cache_dir"):
        typed = is_typed("cache_dir", typed_overrides(cfg)[0]) or not os.environ.get("DFDISTILL_CACHE")
        check_folder_setting(str(cfg.cache_dir), "cache_dir" if typed else "DFDISTILL_CACHE")
    else:
        check_folder_setting(default_cache_dir(), "DFDISTILL_CACHE", default=True)


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


def check_trains(run: "ResolvedRun") -> None:
    """A learning method with 0 iterations would report its untrained initial images under its own name;
    refused for an evaluated run (stage=distill with 0 saves the initial set, as scripts/make_figure.py does)."""
    from dataclasses import MISSING, fields

    default = {f.name: f.default for f in fields(run.method_cls.config_cls)}.get("iterations", MISSING)
    learns = isinstance(default, int) and default > 0
    name = run.cfg.method.name
    if learns and run.stage == "all" and int(getattr(run.method, "iterations", 0) or 0) == 0:
        raise ConfigError(f"method.iterations is 0, so {name} would report its untrained initial images as "
                          f"{name}'s result; give method.iterations >= 1 (or stage=distill to only save the "
                          "initial set, or method=random for a random real subset)")


SET_COPIES = 3  # the images, their gradient and the optimizer's momentum: the least a distillation holds


def available_bytes(device: "torch.device") -> Optional[int]:
    """Free memory where the synthetic set will live: CUDA's free device memory, else MemAvailable."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_set_size(ipc: int, real: RealData, device: "torch.device") -> None:
    """Refuse an IPC whose synthetic set cannot fit, from its estimated size, before it is allocated
    (`ipc=1000000 method.init=noise` would otherwise try to allocate 10 GB and die or swap)."""
    shape = tuple(real.images.shape[1:])
    n = ipc * real.num_classes
    need = n * 4 * SET_COPIES
    for d in shape:
        need *= int(d)
    free = available_bytes(device)
    if free is not None and need > free:
        gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
        raise ConfigError(f"ipc={ipc} makes a synthetic set of {n} images of {'x'.join(map(str, shape))}: about "
                          f"{gib(need)} with its gradient and optimizer state, more than the {gib(free)} free on "
                          f"{device.type}; lower ipc")


def dataset_missing(dataset: Any) -> Optional[str]:
    """Why this dataset config cannot load, found without loading it (absent root, absent
    torchvision files), or None when it looks loadable (embedded, present, or download=true)."""

    try:
        dcfg = dataset_of(dataset)
    except ConfigError as exc:
        return str(exc)
    why = missing(dcfg.name, dcfg)
    if why is None and dcfg.root is not None and not dcfg.download and not Path(dcfg.root).exists():
        why = f"dataset root {dcfg.root} does not exist; put {dcfg.name} there or set dataset.root=<folder>"
    return None if why is None else f"dataset={dcfg.name}: {why} (offline: dataset=digits)"


def check_datasets(datasets: Iterable[Any]) -> None:
    """Each distinct dataset of a sweep once, before its first job: one line for the first missing one."""
    seen: list[Any] = []
    for d in datasets:
        node = OmegaConf.to_container(d, resolve=True) if OmegaConf.is_config(d) else d
        if node in seen:
            continue
        seen.append(node)
        why = dataset_missing(node)
        if why is not None:
            raise DataError(f"{why}; no job of this sweep was started")
