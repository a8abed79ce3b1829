"""MNIST, Fashion-MNIST, SVHN, CIFAR-10/100 through torchvision, read straight from the uint8 `.data` arrays.

Why: torchvision knows the file formats; a per-image PIL pass is not needed for whole-split tensors.
Missing files become one line saying what to download and where to put it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.schema.groups import DatasetConfig
from dfdistill.data.image_folder import Split
from dfdistill.data.registry import Loader, register_dataset
from dfdistill.core.errors import ConfigError, DataError


@dataclass(frozen=True)
class _TvInfo:
    title: str
    cls: str  # torchvision.datasets class name
    files: str  # what to download
    url: str
    place: str  # how to lay it out, with {root}
    split_kw: Callable[[bool], dict]
    present: str = ""  # a path under root that exists once the files are in place (a cheap presence check)
    label: str = ""  # the name the papers' tables print (registry metadata; reporting reads it)


_MNIST_FILES = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
_TV: dict[str, _TvInfo] = {
    "mnist": _TvInfo(
        "MNIST", "MNIST", _MNIST_FILES, "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "gunzip them into {root}/MNIST/raw", lambda train: {"train": train}, "MNIST/raw", label="MNIST",
    ),
    "fashion_mnist": _TvInfo(
        "Fashion-MNIST", "FashionMNIST", _MNIST_FILES, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "gunzip them into {root}/FashionMNIST/raw", lambda train: {"train": train}, "FashionMNIST/raw", label="FashionMNIST",
    ),
    "svhn": _TvInfo(
        "SVHN", "SVHN", "train_32x32.mat and test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/",
        "put them in {root}", lambda train: {"split": "train" if train else "test"}, "train_32x32.mat", label="SVHN",
    ),
    "cifar10": _TvInfo(
        "CIFAR-10", "CIFAR10", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
        "extract it so that {root}/cifar-10-batches-py exists", lambda train: {"train": train}, "cifar-10-batches-py", label="CIFAR10",
    ),
    "cifar100": _TvInfo(
        "CIFAR-100", "CIFAR100", "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
        "extract it so that {root}/cifar-100-python exists", lambda train: {"train": train}, "cifar-100-python", label="CIFAR100",
    ),
}


def _not_found(info: _TvInfo, root: Path) -> str:
    return (f"{info.title} not found under {root}: download {info.files} from {info.url} and "
            f"{info.place.format(root=root)} (or set dataset.download=true on a machine with internet)")


def missing(name: str, cfg: DatasetConfig) -> Optional[str]:
    """Why `name` cannot load without reading it (files absent, no download), or None; a sweep asks
    this once per dataset before its first job instead of every job failing the same way."""
    info = _TV.get(name)
    if info is None or cfg.download or cfg.root is None:
        return None
    return None if (Path(cfg.root) / info.present).exists() else _not_found(info, Path(cfg.root))


def _tv_split(name: str, cfg: DatasetConfig, train: bool) -> Split:
    """One torchvision split read straight from its `.data` array (no per-image PIL pass)."""
    import numpy as np
    import torchvision.datasets as tvd

    info = _TV[name]
    if cfg.root is None:
        raise ConfigError(f"dataset.root is not set for '{name}': set dataset.root=<folder for {info.title}>")
    root = Path(cfg.root)
    manual = f"download {info.files} from {info.url} and {info.place.format(root=root)}"
    try:
        ds = getattr(tvd, info.cls)(str(root), download=cfg.download, **info.split_kw(train))
    except (RuntimeError, OSError) as exc:  # OSError covers URLError / HTTPError / socket errors
        if not cfg.download:
            raise DataError(_not_found(info, root)) from exc
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"downloading {info.title} into {root} failed ({reason}): {manual}") from exc
    data = ds.data
    x = torch.from_numpy(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else data
    if x.ndim == 3:  # MNIST-style (N, H, W)
        x = x.unsqueeze(1)
    elif x.shape[-1] in (1, 3):  # CIFAR-style (N, H, W, C); SVHN is already (N, C, H, W)
        x = x.permute(0, 3, 1, 2)
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = ds.labels
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    names = [str(i) for i in range(10)] if name in ("mnist", "svhn") else list(ds.classes)
    return Split(x.contiguous(), y, names)


def _torchvision_loader(name: str) -> Loader:
    def load(cfg: DatasetConfig, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
        return _tv_split(name, cfg, True), _tv_split(name, cfg, False)

    load.__doc__ = f"{_TV[name].title} through torchvision.datasets (whole split as uint8, read from `.data`)."
    load.__name__ = f"load_{name}"
    return load


for _name in _TV:
    register_dataset(_name, label=_TV[_name].label)(_torchvision_loader(_name))
