"""Dataset registry: `@register_dataset("name")` on a loader; every module in `dfdistill.data.loaders`
is imported on first use, so a new dataset is one loader module plus `conf/dataset/<name>.yaml`.

Why: `load_dataset` and the tests look datasets up here instead of in a hand-kept table. A loader is
`(cfg: DatasetConfig, cache: ArtifactCache | None) -> (train Split, test Split)` that returns raw
pixels (uint8, or [0,1] floats) and class names; limits, storage, normalisation and ZCA are shared.
(Interim home: the core track's `dfdistill.registry.register_dataset` takes this decorator's shape.)
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Callable, Optional

from dfdistill.errors import ConfigError

if TYPE_CHECKING:
    from dfdistill.artifacts import ArtifactCache
    from dfdistill.config.schema import DatasetConfig
    from dfdistill.data.image_folder import Split

Loader = Callable[["DatasetConfig", Optional["ArtifactCache"]], tuple["Split", "Split"]]

_LOADERS: dict[str, Loader] = {}
_discovered = False


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register `fn` as the loader of dataset `name` (a second loader for one name is an error)."""

    def deco(fn: Loader) -> Loader:
        if name in _LOADERS and _LOADERS[name] is not fn:
            raise ValueError(f"dataset {name!r} is registered twice ({_LOADERS[name].__module__} and {fn.__module__})")
        _LOADERS[name] = fn
        return fn

    return deco


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    from dfdistill.data import loaders

    for mod in pkgutil.iter_modules(loaders.__path__):
        importlib.import_module(f"{loaders.__name__}.{mod.name}")
    _discovered = True


def dataset_names() -> list[str]:
    _discover()
    return sorted(_LOADERS)


def get_loader(name: str) -> Loader:
    """The registered loader, or a one-line ConfigError listing the valid names."""
    _discover()
    if name not in _LOADERS:
        raise ConfigError(f"unknown dataset '{name}'; valid names: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]


def unregister_dataset(name: str) -> None:
    """Remove a registration (tests that register toy datasets clean up with this)."""
    _LOADERS.pop(name, None)
