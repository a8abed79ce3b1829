"""Dataset loaders in the shared registry (`dfdistill.core.registry.DATASETS`): `@register_dataset("name")` on a
loader; every module in `dfdistill.data.loaders` is imported on first use, so a new dataset is one
loader module plus `conf/dataset/<name>.yaml`.

A loader is `(cfg: DatasetConfig, cache: ArtifactCache | None) -> (train Split, test Split)` that returns
raw pixels (uint8, or [0,1] floats) and class names; limits, storage, normalisation and ZCA are shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from dfdistill.core.registry import DATASETS, register_dataset

if TYPE_CHECKING:
    from dfdistill.core.artifacts import ArtifactCache
    from dfdistill.schema.groups import DatasetConfig
    from dfdistill.data.image_folder import Split

Loader = Callable[["DatasetConfig", Optional["ArtifactCache"]], tuple["Split", "Split"]]

__all__ = ["Loader", "dataset_names", "get_loader", "register_dataset", "unregister_dataset"]


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_loader(name: str) -> Loader:
    """The registered loader, or a one-line ConfigError listing the valid names."""
    return DATASETS.get(name).obj


def unregister_dataset(name: str) -> None:
    """Remove a registration (tests that register toy datasets clean up with this)."""
    DATASETS.unregister(name)
