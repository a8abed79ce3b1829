"""Registries: a new method, scorer or dataset is one module plus one YAML.

Why decorators + discovery: the schema Hydra checks at compose time, the table labels and the list
of methods that take in-loop pruning are all read from here, so registering an entry is the only
edit outside its own module. Every module of a registry's package is imported on first use, so a new
file is found without a list to update.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

from dfdistill.core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """name -> Entry; `package` is imported module by module before the first lookup."""

    def __init__(self, kind: str, package: Optional[str] = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry[T]] = {}
        self._discovered = package is None

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old.obj is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({old.obj!r} and {obj!r})")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register toy entries clean up with this)."""
        self._entries.pop(name, None)

    def discover(self) -> None:
        """Import every module of the package once (each registers itself on import), then plugins."""
        if not self._discovered:
            self._discovered = True
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{self.package}."):
                importlib.import_module(info.name)
        load_plugins()

    def get(self, name: str) -> Entry[T]:
        self.discover()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self.discover()
        return iter([self._entries[k] for k in sorted(self._entries)])


def load_plugins() -> None:
    """Import the modules named in $DFDISTILL_PLUGINS (comma-separated): parts that live outside the
    package register themselves on import (docs/extending.md). Importing twice is a no-op."""
    for name in filter(None, (m.strip() for m in os.environ.get("DFDISTILL_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"DFDISTILL_PLUGINS names {name!r}, which cannot be imported ({exc}); "
                              "fix the name or PYTHONPATH") from None


METHODS: Registry[type] = Registry("method", "dfdistill.methods")
PRUNERS: Registry[type] = Registry("pruner", "dfdistill.pruning")
BACKBONES: Registry[Callable[..., Any]] = Registry("backbone", "dfdistill.models")
SCORERS: Registry[Callable[..., Any]] = Registry("scorer", "dfdistill.scoring")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset", "dfdistill.data.loaders")


def register_method(name: str, *, config: type, label: str, in_loop_pruning: bool = False,
                    target: Optional[str] = None) -> Callable[[type], type]:
    """Register a Distiller class as `method=<name>` with its config schema and table label.

    `in_loop_pruning`: its real batches go through the adaptive selector (BiLP's ITE); the other
    methods refuse `pruning=ite`. A class may be registered under several names (DC and DSA).
    `target`: the class path identities hash as `method._target_` (default `module.qualname`); the
    method YAMLs once spelled it, and committed runs are keyed by that spelling (DC/DSA name the
    aliases `dc.DC` / `dc.DSA` of GradientMatching)."""

    def decorator(cls: type) -> type:
        cls.supports_adaptive = in_loop_pruning
        cls.config_cls = config
        path = target or f"{cls.__module__}.{cls.__qualname__}"
        return METHODS.register(name, config=config, label=label, in_loop_pruning=in_loop_pruning,
                                target=path)(cls)

    return decorator


def register_scorer(name: str) -> Callable[[T], T]:
    """Register a per-sample scoring function `f(model, real, scoring_cfg) -> (N,) scores` as
    `pruning.criterion=<name>`. No metadata: nothing reads one (a function that needs gradients
    takes them itself; tables label a run by its pruning option, not its criterion)."""
    return SCORERS.register(name)


def register_dataset(name: str, *, label: Optional[str] = None, **meta: Any) -> Callable[[T], T]:
    """Register a dataset loader `f(cfg, cache) -> (train Split, test Split)` as `dataset=<name>`
    (dfdistill/data/loaders/; see dfdistill.data.registry). `label`: the name tables print (default `name`)."""
    return DATASETS.register(name, label=label or name, **meta)


def register_backbone(name: str) -> Callable[[T], T]:
    """Register a network constructor `f(channels, num_classes, image_size, **options)` (a class or a
    partial of one) as `backbone=<name>`. Meta `target`: the class it builds, which a backbone YAML's
    `_target_` must name (config/resolve.check_backbone; expert and score cache keys hash that key)."""

    def decorator(ctor: T) -> T:
        built = getattr(ctor, "func", ctor)
        return BACKBONES.register(name, target=f"{built.__module__}.{built.__qualname__}")(ctor)

    return decorator


def register_pruner(name: str, *, label: str, adaptive: bool = False) -> Callable[[type], type]:
    """Register a data selection as pruning option `name`: a static pruner (`apply(cfg, train, factory,
    cache, device)`, run once before distillation) or, with `adaptive`, an in-loop selector
    (`from_config(cfg, train)`, BiLP's ITE). `label` is how tables name runs that use it.

    The pruning YAMLs keep `_target_` (the class path): identities hash it, and a null one is how a
    run says "no static selection"; it must name a registered class (`pruner_class`)."""

    def decorator(cls: type) -> type:
        return PRUNERS.register(name, label=label, adaptive=adaptive, target=f"{cls.__module__}.{cls.__qualname__}")(cls)

    return decorator


def pruner_class(target: str, *, adaptive: bool) -> type:
    """The registered pruner (static, or adaptive) whose class path is `target`; one line otherwise."""
    kind = "pruning.adaptive._target_" if adaptive else "pruning._target_"
    valid = [e for e in PRUNERS if e.meta["adaptive"] == adaptive]
    for entry in valid:
        if entry.meta["target"] == target:
            return entry.obj
    raise ConfigError(f"{kind}={target} is not a registered {'adaptive selector' if adaptive else 'static pruner'}; "
                      f"use one of {', '.join(e.meta['target'] for e in valid)} (or pick pruning=<name>)")


def pruning_label(name: str) -> str:
    """Table label of a pruning option (`random` -> 'random pruning'); an unregistered one keeps its name."""
    return PRUNERS.get(name).meta["label"] if name in PRUNERS else name


def dataset_label(name: str) -> str:
    """The name tables print for a registered dataset (`cifar10` -> 'CIFAR10'); others keep their name."""
    return DATASETS.get(name).meta["label"] if name in DATASETS else name


def method_label(name: str) -> str:
    """Table label of a registered method (its name when none is registered under it). A YAML variant
    such as dfcolearn_random is mapped to its base by reporting.layouts.method_label, which reads conf/."""
    return METHODS.get(name).meta["label"] if name in METHODS else name


def in_loop_pruning_methods() -> list[str]:
    return [e.name for e in METHODS if e.meta.get("in_loop_pruning")]
