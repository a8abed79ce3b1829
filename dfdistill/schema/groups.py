"""Structured-config dataclasses: the typed, range-checked shape of every config group.

Why: Hydra merges YAML into these at compose time, so a wrong type or unknown key fails before any
work starts with the full key path; `validate()` then instantiates them as Python objects so the
`__post_init__` range checks run (OmegaConf alone does not call them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dfdistill.core.errors import ConfigError
from dfdistill.engine.memory import MemoryConfig
from dfdistill.engine.runtime import GPUConfig


_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}
@lru_cache(maxsize=None)
def _structured(schema: type) -> Any:
    """The schema as an OmegaConf node, built once (merge copies it; building it is most of the
    cost of validating a config, which sweep planning does for every job)."""
    return OmegaConf.structured(schema)


def typed(schema: type, node: Any, group: str) -> Any:
    """`node` merged into `schema` and instantiated, so its `__post_init__` range checks run.

    Unknown keys and wrong types become one-line ConfigErrors naming the key; NaN and infinity are
    refused in every float field (`method.lr_img=nan` passed validation and only surfaced later as a
    NaN loss)."""
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(_structured(schema), node))
    except OmegaConfBaseException as exc:
        raise ConfigError(type_message(exc, group)) from None
    check_finite(obj, "" if group == "top-level" else group)
    return obj


_checked: dict[tuple, Any] = {}


def checked(schema: type, node: Any, group: str, content: Any = None) -> Any:
    """`typed(schema, node, group)` remembered per (schema, content): a sweep plan validates hundreds
    of jobs whose groups mostly repeat (same dataset, eval, profile). Only configs that passed are
    remembered (a bad one raises every time); callers must not modify the returned object.
    `content`: the node as plain data (`to_container(node, resolve=True)`) where the caller has it."""
    if content is None:
        content = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    key = (schema, json.dumps(content, sort_keys=True, default=str))
    if key not in _checked:
        _checked[key] = typed(schema, node, group)
    return _checked[key]


def type_message(exc: OmegaConfBaseException, group: str) -> str:
    """`ipc must be an integer, got '1.5'` rather than OmegaConf's text without the key."""
    first = str(exc).splitlines()[0]
    key = str(getattr(exc, "full_key", "") or "")
    name = key if group == "top-level" or not key else f"{group}.{key}"
    want = re.search(r"could not be converted to (\w+)", first)
    if name and want:
        value = getattr(exc, "value", None)
        head = f"{name} must be {_TYPE_WORDS.get(want.group(1), want.group(1))}"
        if OmegaConf.is_list(value) or isinstance(value, list):
            values = ",".join(map(str, value))
            return f"{head}, got [{values}]; one run takes one value: for one run per value sweep it: -m {name}={values}"
        return type_hint(name, want.group(1), str(value))
    return f"invalid {group} config" + (f" at {name}" if name else "") + f": {first}"


def type_hint(name: str, kind: str, value: str) -> str:
    """`ipc must be an integer, got 'abc'; type e.g. ipc=1` (kind: OmegaConf's type word)."""
    example = {"Integer": "1", "Float": "0.1", "Boolean": "true"}.get(kind, "...")
    return f"{name} must be {_TYPE_WORDS.get(kind, kind)}, got {value!r}; type e.g. {name}={example}"


def check_finite(obj: Any, prefix: str) -> None:
    """Every float field of a (nested) dataclass is a finite number."""
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        values = v if isinstance(v, (list, tuple)) else [v]
        if any(isinstance(x, float) and not math.isfinite(x) for x in values):
            raise ConfigError(f"{name} must be a finite number, got {v}; type a number, e.g. {name}=0.1")
        check_finite(v, name)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class DatasetConfig:
    """The dataset group: the one schema (Hydra checks it at compose, resolve validates it, and
    `dfdistill.data` reads the dataset as this object). Normalisation stats live only in the YAML."""

    name: str = MISSING
    root: Optional[str] = None
    download: bool = False
    image_size: Optional[int] = None  # null: native size (an image folder's images must then share one size)
    channels: Optional[int] = None  # null: the loader's native channels (image folders decode RGB)
    num_classes: Optional[int] = None  # null: whatever the data has; set: checked against it
    mean: Optional[list[float]] = None  # null (with std): computed from the train split's kept rows
    std: Optional[list[float]] = None
    zca: bool = False
    zca_eps: float = 0.1
    # kornia: MTT/TESLA's (pixels, eigenvalues + eps); rfad: RFAD's (standardised, eps x mean eigenvalue).
    # Read only when zca is true (and left out of run identities then, dfdistill.config.resolve).
    zca_mode: str = "kornia"
    max_train_per_class: Optional[int] = None
    max_test: Optional[int] = None
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    storage: str = "auto"  # auto | device | host: where the uint8 split lives (auto: device when it fits)
    decode_workers: Optional[int] = None  # image-folder decode processes; null: the usable CPU cores
    paper_name: Optional[str] = None  # the papers' name for this data (cifar10_jpeg -> cifar10): recipes and tables

    def __post_init__(self) -> None:
        _check(self.zca_eps > 0, f"dataset.zca_eps must be > 0, got {self.zca_eps}")
        _check(self.zca_mode in ("kornia", "rfad"),
               f"dataset.zca_mode must be kornia or rfad, got {self.zca_mode!r}; e.g. dataset.zca_mode=kornia")
        for key in ("image_size", "channels", "num_classes", "max_train_per_class", "max_test", "decode_workers"):
            v = getattr(self, key)
            _check(v is None or v > 0, f"dataset.{key} must be positive or null, got {v}")
        _check(self.storage in ("auto", "device", "host"),
               f"dataset.storage must be auto, device or host, got {self.storage!r}")
        _check((self.mean is None) == (self.std is None),
               "dataset.mean and dataset.std must both be set or both be null")
        if self.mean is not None and self.std is not None:
            _check(len(self.mean) == len(self.std) and len(self.mean) > 0,
                   f"dataset.mean/std need one value per channel each, got {len(self.mean)} and {len(self.std)}")
            _check(min(self.std) > 0, f"dataset.std must be positive, got {list(self.std)}")


@dataclass
class EvalConfig:
    """The one place the evaluation protocol lives (DC/DSA/DM/MTT protocol by default)."""

    name: str = "default"
    epochs: Optional[int] = None  # null: 1000 with augmentation, 300 without (reference rule)
    lr: Optional[float] = None  # null: the method's (0.01, or MTT/TESLA's learned lr)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    num_eval: int = 5
    schedule: str = "half"  # half: x0.1 after epoch E//2+1 (DC); multistep: x lr_decay at milestones (IDC)
    milestones: list[float] = field(default_factory=lambda: [2 / 3, 5 / 6])
    lr_decay: float = 0.2  # multistep: lr factor at each milestone (IDC: 0.2)
    aug: Optional[str] = None  # null: the method's eval_aug (dsa | idc | dc | none)
    # null: dsa -> the dataset's DSA strategy; idc -> it without cutout; dc -> crop_scale_rotate
    # (crop_noise on the reference's ConvNetBN -- depth 3 -- also on MNIST, where an eval_aug 'none' method
    # also gets dc: reference get_daparam)
    aug_strategy: Optional[str] = None
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    test_batch_size: int = 512
    cross_arch: list[str] = field(default_factory=list)
    compare_random: bool = True  # also evaluate a random real subset at the same IPC, same protocol

    def __post_init__(self) -> None:
        _check(self.num_eval >= 1, f"eval.num_eval must be >= 1, got {self.num_eval}")
        _check(self.epochs is None or self.epochs >= 1,
               f"eval.epochs must be >= 1 (a network trained for 0 epochs is untrained), got {self.epochs}")
        _check(self.lr is None or self.lr > 0, f"eval.lr must be > 0 (or null for the method's), got {self.lr}")
        _check(self.schedule in ("half", "multistep"), f"eval.schedule must be half|multistep, got {self.schedule}")
        _check(self.batch_size > 0, "eval.batch_size must be > 0")
        _check(0 <= self.cutmix_prob <= 1, "eval.cutmix_prob must be in [0, 1]")
        _check(self.aug in (None, "dsa", "idc", "dc", "none"), f"eval.aug must be dsa|idc|dc|none|null, got {self.aug}")


@dataclass
class ProfileConfig:
    """Scales sizes and counts only; null keeps the method's / paper's value."""

    name: str = "full"
    iterations: Optional[int] = None
    eval_epochs: Optional[int] = None
    num_eval: Optional[int] = None
    width: Optional[int] = None
    batch_real: Optional[int] = None
    max_train_per_class: Optional[int] = None
    max_test: Optional[int] = None
    num_experts: Optional[int] = None
    expert_train_epochs: Optional[int] = None  # caps method.expert_train_epochs (MTT/TESLA)
    scoring_epochs: Optional[int] = None  # caps pruning.train_epochs; read-outs past it -> mean of epochs 1..k
    scoring_trials: Optional[int] = None  # caps pruning.trials
    match_steps: Optional[int] = None  # caps IDC's method.match_steps; DC's table-driven loops untouched
    checkpoint_every: Optional[int] = None

    def __post_init__(self) -> None:
        for key in ("iterations", "eval_epochs", "num_eval", "width", "batch_real", "num_experts", "expert_train_epochs", "match_steps"):
            v = getattr(self, key)
            _check(v is None or v > 0, f"profile.{key} must be positive or null, got {v}")


@dataclass
class LoggerConfig:
    name: str = "none"
    project: str = "dfdistill"
    mode: str = "offline"  # offline | online | disabled
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self.name in ("none", "wandb"), f"logger must be none|wandb, got {self.name}")
        _check(self.mode in ("offline", "online", "disabled"), f"logger.mode must be offline|online|disabled")


@dataclass
class RunConfig:
    """Top-level keys: short names so sweeps read well (ipc=1,10 seed=0,1,2)."""

    ipc: int = 10
    seed: int = 0
    device: str = "auto"
    stage: str = "all"
    synthetic: Optional[str] = None  # stage=eval: a synthetic.pt or the run dir holding one
    resume: Optional[str] = None
    force: bool = False
    checkpoint_every: int = 50
    log_every: int = 10
    output_dir: str = MISSING
    cache_dir: Optional[str] = None
    progress: bool = True
    print_config: bool = False  # print the effective (resolved) config and exit
    compile: str = "auto"  # torch.compile of first-order paths: auto | on | off (dfdistill/engine/compiled.py)
    ensemble: str = "auto"  # networks of one architecture train as one batched model: auto (CUDA) | on | off
    cli_overrides: list[str] = field(default_factory=list)  # what the user typed (run.py fills it): it wins
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # real-side pass sizes (dfdistill/engine/memory.py)
    gpu: GPUConfig = field(default_factory=GPUConfig)  # speed switches (dfdistill/engine/runtime.py)
    dataset: Any = MISSING
    backbone: Any = MISSING
    method: Any = MISSING
    pruning: Any = MISSING
    eval: Any = MISSING
    profile: Any = MISSING
    logger: Any = MISSING

    def __post_init__(self) -> None:
        _check(self.ipc > 0, f"ipc must be a positive integer, got {self.ipc}")
        _check(0 <= self.seed < 2**32, f"seed must be an integer in [0, 2**32 - 1], got {self.seed}; e.g. seed=0")
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto|cpu|cuda[:N], got {self.device}")
        for key in ("compile", "ensemble"):
            _check(str(getattr(self, key)).lower() in ("auto", "on", "off", "true", "false"),
                   f"{key} must be auto|on|off, got {getattr(self, key)}")
        _check(self.stage in ("all", "experts", "scores", "distill", "eval"),
               f"stage must be all|experts|scores|distill|eval, got {self.stage}")
        _check(self.checkpoint_every > 0, "checkpoint_every must be > 0")
