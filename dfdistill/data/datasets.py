"""`load_dataset(cfg)`: every supported dataset as a (train, test) pair of whole-split RealData tensors.

Why: distillation methods want the real split as one normalized tensor on the device, never a
DataLoader. Each loader here only produces raw pixels ([0,1] floats or uint8) and class names; one
shared path then limits rows (smoke tests), normalizes with the reference mean/std (or the train
split's own), and optionally ZCA-whitens with a cached fit, so every dataset behaves identically.
Missing files become a one-line DataError that says what to download and where to put it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.artifacts import ArtifactCache, config_key
from dfdistill.data import image_folder as imf
from dfdistill.data.image_folder import Split
from dfdistill.data.real import RealData
from dfdistill.errors import ConfigError, DataError

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))

# Reference normalization statistics; datasets absent here (digits, image_folder) use their train split's.
DEFAULT_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2861,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": _CIFAR10,
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": _IMAGENET,
    "imagenet1k": _IMAGENET,
    "cifar10_jpeg": _CIFAR10,
}


@dataclass
class DatasetSpec:
    """The dataset config group, validated and with the root made absolute."""

    name: str
    root: Optional[Path] = None
    download: bool = False
    image_size: Optional[int] = None
    channels: Optional[int] = None
    num_classes: Optional[int] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    zca: bool = False
    zca_eps: float = 0.1
    max_train_per_class: Optional[int] = None
    max_test: Optional[int] = None

    @property
    def decode_train_limit(self) -> Optional[int]:
        """Rows per class a loader may stop at; ZCA must be fitted on the whole train split."""
        return None if self.zca else self.max_train_per_class

    def require_root(self, expected: str) -> Path:
        if self.root is None:
            raise ConfigError(f"dataset.root is not set for '{self.name}': set dataset.root=<folder containing {expected}>")
        if not self.root.exists():
            raise DataError(f"dataset root {self.root} does not exist: expected {expected} there")
        return self.root


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        if isinstance(cfg, Mapping):
            value = cfg.get(key, default)
        else:
            value = getattr(cfg, key, default)
    except Exception as exc:  # noqa: BLE001 - omegaconf MissingMandatoryValue / interpolation errors
        raise ConfigError(f"dataset.{key} must be set ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    return default if value is None else value


def _original_cwd() -> Path:
    """Hydra's launch directory when running under Hydra (it may chdir), else the process cwd."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if HydraConfig.initialized():
            return Path(get_original_cwd())
    except Exception:  # noqa: BLE001 - hydra missing or not running
        pass
    return Path.cwd()


def resolve_root(root: Any) -> Optional[Path]:
    """Absolute root: ~ and $VARS expanded, relative paths taken from the launch directory."""
    if root is None or str(root).strip() == "":
        return None
    p = Path(os.path.expandvars(str(root))).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else _original_cwd() / p))


def _opt_int(v: Any, key: str) -> Optional[int]:
    if v is None:
        return None
    try:
        out = int(v)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dataset.{key} must be an integer or null, got {v!r}") from exc
    if out <= 0:
        raise ConfigError(f"dataset.{key} must be positive, got {out}")
    return out


def _opt_floats(v: Any, key: str) -> Optional[tuple[float, ...]]:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return (float(v),)
    try:
        return tuple(float(x) for x in v)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dataset.{key} must be a list of numbers or null, got {v!r}") from exc


def make_spec(cfg: Any) -> DatasetSpec:
    """Read a mapping / DictConfig / dataclass into a DatasetSpec (unknown name -> ConfigError)."""
    if isinstance(cfg, DatasetSpec):
        return cfg
    name = str(_get(cfg, "name", ""))
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; valid names: {', '.join(sorted(DATASETS))}")
    return DatasetSpec(
        name=name,
        root=resolve_root(_get(cfg, "root")),
        download=bool(_get(cfg, "download", False)),
        image_size=_opt_int(_get(cfg, "image_size"), "image_size"),
        channels=_opt_int(_get(cfg, "channels"), "channels"),
        num_classes=_opt_int(_get(cfg, "num_classes"), "num_classes"),
        mean=_opt_floats(_get(cfg, "mean"), "mean"),
        std=_opt_floats(_get(cfg, "std"), "std"),
        zca=bool(_get(cfg, "zca", False)),
        zca_eps=float(_get(cfg, "zca_eps", 0.1)),
        max_train_per_class=_opt_int(_get(cfg, "max_train_per_class"), "max_train_per_class"),
        max_test=_opt_int(_get(cfg, "max_test"), "max_test"),
    )


# ------------------------------------------------------------------------------------------------
# Loaders: (spec, cache) -> (train Split, test Split) with uint8 or [0,1]-float pixels.
# ------------------------------------------------------------------------------------------------

Loader = Callable[[DatasetSpec, Optional[ArtifactCache]], tuple[Split, Split]]


def load_digits_split(spec: DatasetSpec, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits, fixed stratified 80/20 split, bilinear-upsampled to 28x28.

    Why: it ships with scikit-learn, so tests and first runs work offline with MNIST-shaped inputs.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=0)
    size = spec.image_size or 28
    x = torch.tensor(d.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target, dtype=torch.long)
    names = [str(i) for i in range(10)]
    tr_t, te_t = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    return Split(x[tr_t], y[tr_t], names), Split(x[te_t], y[te_t], names)


@dataclass(frozen=True)
class _TvInfo:
    title: str
    cls: str  # torchvision.datasets class name
    files: str  # what to download
    url: str
    place: str  # how to lay it out, with {root}
    split_kw: Callable[[bool], dict]


_MNIST_FILES = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
_TV: dict[str, _TvInfo] = {
    "mnist": _TvInfo(
        "MNIST", "MNIST", _MNIST_FILES, "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "gunzip them into {root}/MNIST/raw", lambda train: {"train": train},
    ),
    "fashion_mnist": _TvInfo(
        "Fashion-MNIST", "FashionMNIST", _MNIST_FILES, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "gunzip them into {root}/FashionMNIST/raw", lambda train: {"train": train},
    ),
    "svhn": _TvInfo(
        "SVHN", "SVHN", "train_32x32.mat and test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/",
        "put them in {root}", lambda train: {"split": "train" if train else "test"},
    ),
    "cifar10": _TvInfo(
        "CIFAR-10", "CIFAR10", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
        "extract it so that {root}/cifar-10-batches-py exists", lambda train: {"train": train},
    ),
    "cifar100": _TvInfo(
        "CIFAR-100", "CIFAR100", "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
        "extract it so that {root}/cifar-100-python exists", lambda train: {"train": train},
    ),
}


def _tv_split(name: str, spec: DatasetSpec, train: bool) -> Split:
    """One torchvision split read straight from its `.data` array (no per-image PIL pass)."""
    import numpy as np
    import torchvision.datasets as tvd

    info = _TV[name]
    if spec.root is None:
        raise ConfigError(f"dataset.root is not set for '{name}': set dataset.root=<folder for {info.title}>")
    root = spec.root
    manual = f"download {info.files} from {info.url} and {info.place.format(root=root)}"
    try:
        ds = getattr(tvd, info.cls)(str(root), download=spec.download, **info.split_kw(train))
    except (RuntimeError, OSError) as exc:  # OSError covers URLError / HTTPError / socket errors
        if not spec.download:
            raise DataError(
                f"{info.title} not found under {root}: {manual} (or set dataset.download=true on a machine with internet)"
            ) from exc
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
    def load(spec: DatasetSpec, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
        return _tv_split(name, spec, True), _tv_split(name, spec, False)

    load.__doc__ = f"{_TV[name].title} through torchvision.datasets (whole split, ToTensor + Normalize only)."
    return load


def load_image_folder(spec: DatasetSpec, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """Generic root/{train,test|val}/<class>/<images>; classes are train's sorted folder names."""
    root = spec.require_root("train/<class>/<images> and test/<class>/<images> (or val/)")
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    if not (root / "train").is_dir() or not test_dir.is_dir():
        raise DataError(f"{root} must contain train/ and test/ (or val/) folders with one sub-folder per class")
    classes = imf.class_folders(root / "train")
    test_classes = imf.class_folders(test_dir)
    if test_classes != classes:
        diff = sorted(set(classes) ^ set(test_classes)) or ["(same names, different order)"]
        raise DataError(
            f"class folders differ between {root / 'train'} and {test_dir}: {', '.join(diff[:10])}; both need the same classes"
        )
    ch = spec.channels or 3
    train = imf.load_split(imf.scan_class_tree(root / "train", classes), spec.image_size, ch, cache,
                           per_class=spec.decode_train_limit, desc=f"{spec.name} train")
    test = imf.load_split(imf.scan_class_tree(test_dir, classes), spec.image_size, ch, cache,
                          total=spec.max_test, desc=f"{spec.name} {test_dir.name}")
    return train, test


def _tiny_val_listing(root: Path, classes: list[str]) -> imf.FileList:
    """root/val/images/* labelled by root/val/val_annotations.txt (filename<TAB>wnid<TAB>...)."""
    ann = root / "val" / "val_annotations.txt"
    img_dir = root / "val" / "images"
    if not ann.is_file() or not img_dir.is_dir():
        raise DataError(f"Tiny ImageNet validation split missing: expected {ann} and {img_dir}")
    label_of = {c: i for i, c in enumerate(classes)}
    wnid_of: dict[str, str] = {}
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            wnid_of[parts[0]] = parts[1]
    files, newest = imf.scan_dir(img_dir)
    pairs = []
    for f in files:
        base = os.path.basename(f)
        wnid = wnid_of.get(base)
        if wnid is None or wnid not in label_of:
            raise DataError(f"{f} has no known class in {ann}: annotations and wnids.txt must cover every val image")
        pairs.append((label_of[wnid], base, f))
    pairs.sort(key=lambda t: (t[0], t[1]))
    newest = max(newest, ann.stat().st_mtime_ns)
    return imf.FileList(root / "val", [p for _, _, p in pairs], [lb for lb, _, _ in pairs], classes, newest)


def load_tinyimagenet(spec: DatasetSpec, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """The original tiny-imagenet-200 tree; the labelled val split serves as the test split."""
    root = spec.require_root("the tiny-imagenet-200 tree (wnids.txt, train/<wnid>/images/, val/images/, "
                             "val/val_annotations.txt) from http://cs231n.stanford.edu/tiny-imagenet-200.zip")
    wnids_file = root / "wnids.txt"
    if wnids_file.is_file():
        classes = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())
    else:
        classes = imf.class_folders(root / "train")
    ch = spec.channels or 3
    train = imf.load_split(imf.scan_class_tree(root / "train", classes, sub="images"), spec.image_size, ch, cache,
                           per_class=spec.decode_train_limit, desc="tinyimagenet train")
    test = imf.load_split(_tiny_val_listing(root, classes), spec.image_size, ch, cache,
                          total=spec.max_test, desc="tinyimagenet val")
    return train, test


def load_imagenet1k(spec: DatasetSpec, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """ImageNet-1k as root/{train,val}/<wnid>/*.JPEG, each image resized whole to image_size (default 64)."""
    root = spec.require_root("ImageNet-1k as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    spec = dataclasses.replace(spec, image_size=spec.image_size or 64)
    return load_image_folder(spec, cache)


DATASETS: dict[str, Loader] = {
    "digits": load_digits_split,
    **{name: _torchvision_loader(name) for name in _TV},
    "tinyimagenet": load_tinyimagenet,
    "imagenet1k": load_imagenet1k,
    "image_folder": load_image_folder,
    "cifar10_jpeg": load_image_folder,
}


# ------------------------------------------------------------------------------------------------
# Shared path: limit rows, convert, normalize, whiten.
# ------------------------------------------------------------------------------------------------


def _limit(split: Split, per_class: Optional[int], total: Optional[int]) -> Split:
    """Keep the first n per class / a class-balanced first n (idempotent if the loader already did)."""
    keep = imf.select(split.labels, per_class, total)
    if keep is None or keep.numel() == split.labels.numel():
        return split
    index = keep if split.index is None else split.index[keep]
    return Split(split.images[keep], split.labels[keep], split.class_names, index)


def _to_float(images: Tensor, device: torch.device, image_size: Optional[int], chunk: int = 8192) -> Tensor:
    """[0,1] float32 (N, C, S, S) on device, bilinearly resized (antialiased) when image_size differs.

    Chunked into a preallocated output so peak memory is the result plus one chunk.
    """
    n, c, h, w = images.shape
    size = (image_size, image_size) if image_size is not None else (h, w)
    out = torch.empty((n, c, *size), dtype=torch.float32, device=device)
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    if (h, w) == size:  # no temporaries: convert while copying, then scale in place
        out.copy_(images)
        return out.div_(scale) if scale != 1.0 else out
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(device).float().div_(scale)
        out[start : start + len(x)] = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out


def _normalize_(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _stats(spec: DatasetSpec, train: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Explicit config stats, else the reference table, else the (kept) train split's own per-channel stats."""
    c = train.shape[1]
    if spec.zca:  # MTT convention: ToTensor only, the whitening does the centring
        return (0.0,) * c, (1.0,) * c
    mean, std = spec.mean, spec.std
    if mean is None or std is None:
        ref = DEFAULT_STATS.get(spec.name)
        if ref is not None and len(ref[0]) == c:
            mean, std = mean or ref[0], std or ref[1]
        else:
            s, m = torch.std_mean(train.double(), dim=(0, 2, 3))
            mean, std = mean or tuple(m.tolist()), std or tuple(s.clamp_min(1e-6).tolist())
    if len(mean) != c or len(std) != c:
        raise ConfigError(f"dataset.mean/std need {c} values for '{spec.name}' (got {len(mean)} and {len(std)})")
    if min(std) <= 0:
        raise ConfigError(f"dataset.std must be positive, got {list(std)}")
    return tuple(mean), tuple(std)


def _fit_zca(spec: DatasetSpec, raw: Split, x: Tensor, cache: Optional[ArtifactCache]) -> Any:
    """ZCA fitted on the whole train split, cached under cache/zca keyed by the dataset's identity."""
    from dfdistill.data.zca import ZCA

    identity = {
        "name": spec.name,
        "root": str(spec.root) if spec.root else None,
        "shape": list(x.shape),
        "pixel_sum": float(raw.images.double().sum()) if raw.images.is_floating_point() else int(raw.images.sum(dtype=torch.int64)),
        "labels": config_key(raw.labels.cpu()),
        "eps": spec.zca_eps,
    }
    key = config_key(identity)
    state = cache.load("zca", key) if cache is not None else None
    zca = None
    if state is not None:
        try:
            zca = ZCA.from_state_dict(state)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"[dfdistill] cached ZCA {cache.path('zca', key)} unusable ({exc}); refitting it")
    if zca is None:
        zca = ZCA()
        fitted = zca.fit(x, eps=spec.zca_eps)
        zca = fitted if isinstance(fitted, ZCA) else zca
        if cache is not None:
            cache.save("zca", key, zca.state_dict())
    return zca.to(x.device)


def _check(spec: DatasetSpec, train: Split, test: Split) -> None:
    c = int(train.images.shape[1])
    if spec.channels is not None and spec.channels != c:
        raise ConfigError(f"dataset.channels={spec.channels} but '{spec.name}' images have {c} channel(s); set dataset.channels={c}")
    if spec.num_classes is not None and spec.num_classes != len(train.class_names):
        raise DataError(
            f"dataset.num_classes={spec.num_classes} but '{spec.name}' has {len(train.class_names)} classes"
            + (f" under {spec.root}" if spec.root else "")
        )
    if list(test.class_names) != list(train.class_names):
        raise DataError(f"'{spec.name}': test classes differ from train classes")


def _real(spec: DatasetSpec, split: Split, x: Tensor, mean, std, zca: Any, device: torch.device) -> RealData:
    src = split.index.to(device) if split.index is not None else None
    return RealData(
        images=x, labels=split.labels.to(device=device, dtype=torch.long), num_classes=len(split.class_names),
        class_names=list(split.class_names), mean=mean, std=std, name=spec.name, zca=zca, source_index=src,
    )


def load_dataset(
    cfg: Any, device: str | torch.device = "cpu", cache_dir: str | Path | None = None
) -> tuple[RealData, RealData]:
    """(train, test) RealData for `cfg` (the dataset config group), normalized and on `device`."""
    spec = make_spec(cfg)
    device = torch.device(device)
    cache = ArtifactCache(cache_dir)
    train, test = DATASETS[spec.name](spec, cache)
    _check(spec, train, test)
    test = _limit(test, None, spec.max_test)

    zca = None
    if spec.zca:
        x_full = _to_float(train.images, device, spec.image_size)
        zca = _fit_zca(spec, train, x_full, cache)
        train = _limit(train, spec.max_train_per_class, None)
        x_train = x_full if train.index is None else x_full[train.index.to(device)]
        del x_full
        x_train = zca.transform(x_train)
        x_test = zca.transform(_to_float(test.images, device, spec.image_size))
        mean, std = _stats(spec, x_train)
    else:
        train = _limit(train, spec.max_train_per_class, None)
        x_train = _to_float(train.images, device, spec.image_size)
        x_test = _to_float(test.images, device, spec.image_size)
        mean, std = _stats(spec, x_train)
        _normalize_(x_train, mean, std)
        _normalize_(x_test, mean, std)
    return _real(spec, train, x_train, mean, std, zca, device), _real(spec, test, x_test, mean, std, zca, device)
