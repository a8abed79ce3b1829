"""`load_dataset(cfg)`: every registered dataset as a (train, test) pair of RealData.

Why: distillation methods want the real split as one stored tensor with model-space batches, never
a DataLoader. Each loader (`loaders/`, one module per dataset family) only produces raw pixels
(uint8 or [0,1] floats) and class names; this one shared path then limits rows (smoke tests),
keeps the pixels in their compact stored form, places them where they fit (`storage.py`), takes
the normalisation stats from the config (or, when the YAML leaves them null, from the train split
itself, in chunks) and fits ZCA on the whole train split (cached), so every dataset behaves alike.
Missing files become a one-line DataError that says what to download and where to put it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.core.artifacts import ArtifactCache, config_key
from dfdistill.schema.groups import DatasetConfig
from dfdistill.data import image_folder as imf
from dfdistill.data.image_folder import Split
from dfdistill.data.real import RealData
from dfdistill.data.registry import get_loader
from dfdistill.data.spec import dataset_of
from dfdistill.data.storage import canonical_device, choose_storage
from dfdistill.core.errors import ConfigError, DataError
from dfdistill.core.log import log
from dfdistill.data.zca import ZCA

_CHUNK = 4096  # rows per pass when converting / summarising the split (bounds the float temporaries)


def _limit(split: Split, per_class: Optional[int], total: Optional[int]) -> Split:
    """Keep the first n per class / a class-balanced first n (idempotent if the loader already did)."""
    keep = imf.select(split.labels, per_class, total)
    if keep is None or keep.numel() == split.labels.numel():
        return split
    index = keep if split.index is None else split.index[keep]
    return Split(split.images[keep], split.labels[keep], split.class_names, index)


def to_pixels(images: Tensor, image_size: Optional[int]) -> Tensor:
    """The stored pixel form: uint8 stays uint8, floats become float32 in [0,1]; resized when image_size differs.

    Resizing is antialiased bilinear in float, chunk by chunk into a preallocated output; a uint8
    split is rounded back to uint8 (within 0.5/255 of the float result, as a resized JPEG would be).
    """
    n, c, h, w = images.shape
    if image_size is None or (h, w) == (image_size, image_size):
        return images if images.dtype == torch.uint8 else images.float()
    is_u8 = images.dtype == torch.uint8
    out = torch.empty((n, c, image_size, image_size), dtype=torch.uint8 if is_u8 else torch.float32)
    for s in range(0, n, _CHUNK):
        x = images[s : s + _CHUNK].float()
        x = x.div_(255.0) if is_u8 else x
        y = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        out[s : s + len(y)] = y.mul_(255.0).round_().clamp_(0, 255) if is_u8 else y
    return out


def pixel_stats(pixels: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of [0,1] pixels, two float64 passes one chunk at a time."""
    c = pixels.shape[1]

    def chunks():
        for s in range(0, pixels.shape[0], _CHUNK):
            x = pixels[s : s + _CHUNK].float()
            yield (x.div_(255.0) if pixels.dtype == torch.uint8 else x).double()

    count = pixels.numel() // c
    total = torch.zeros(c, dtype=torch.float64)
    for x in chunks():
        total += x.sum(dim=(0, 2, 3))
    mean = total / count
    sq = torch.zeros(c, dtype=torch.float64)
    for x in chunks():
        sq += (x - mean.view(1, -1, 1, 1)).square().sum(dim=(0, 2, 3))
    std = (sq / max(count - 1, 1)).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def _stats(cfg: DatasetConfig, pixels: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The config's stats (the YAML is their one home), else the kept train split's own. ZCA: (0, 1) in
    the kornia convention (ToTensor only, the whitening centres); the whole train split's own in the
    rfad convention (RFAD standardises with the split's mean/std before whitening, whatever the YAML says)."""
    c = pixels.shape[1]
    if cfg.zca and cfg.zca_mode == "kornia":  # MTT convention: ToTensor only, the whitening does the centring
        return (0.0,) * c, (1.0,) * c
    if cfg.zca:
        return pixel_stats(pixels)
    if cfg.mean is None or cfg.std is None:
        return pixel_stats(pixels)
    if len(cfg.mean) != c or len(cfg.std) != c:
        raise ConfigError(f"dataset.mean/std need {c} values for '{cfg.name}' (got {len(cfg.mean)} and {len(cfg.std)})")
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def _pixel_sum(pixels: Tensor) -> float | int:
    """Exact (uint8) or float64 sum of the split, in chunks: a cheap content fingerprint for the ZCA key."""
    if pixels.dtype == torch.uint8:
        return sum(int(pixels[s : s + _CHUNK].sum(dtype=torch.int64)) for s in range(0, pixels.shape[0], _CHUNK))
    return float(sum(pixels[s : s + _CHUNK].double().sum() for s in range(0, pixels.shape[0], _CHUNK)))


def _fit_zca(cfg: DatasetConfig, split: Split, pixels: Tensor, real: RealData, cache: Optional[ArtifactCache]) -> Any:
    """ZCA fitted on the whole train split (read in chunks from `real`, i.e. in its model space: pixels for
    kornia, standardised for rfad), cached under cache/zca."""

    identity = {
        "name": cfg.name,
        "root": cfg.root,
        "shape": list(real.images.shape),
        "pixel_sum": _pixel_sum(pixels),
        "labels": config_key(split.labels.cpu()),
        "eps": cfg.zca_eps,
        **({} if cfg.zca_mode == "kornia" else {"mode": cfg.zca_mode}),  # kornia keeps its earlier cache keys
    }
    key = config_key(identity)
    state = cache.load("zca", key) if cache is not None else None
    zca = None
    if state is not None:
        try:
            zca = ZCA.from_state_dict(state)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(f"cached ZCA {cache.path('zca', key)} unusable ({exc}); refitting it")
    if zca is None:
        zca = ZCA().fit(real.images, eps=cfg.zca_eps, mode=cfg.zca_mode)
        if cache is not None:
            cache.save("zca", key, zca.state_dict())
    return zca.to(real.device)


def _check(cfg: DatasetConfig, train: Split, test: Split) -> None:
    c = int(train.images.shape[1])
    if cfg.channels is not None and cfg.channels != c:
        raise ConfigError(f"dataset.channels={cfg.channels} but '{cfg.name}' images have {c} channel(s); set dataset.channels={c}")
    if cfg.num_classes is not None and cfg.num_classes != len(train.class_names):
        raise DataError(
            f"dataset.num_classes={cfg.num_classes} but '{cfg.name}' has {len(train.class_names)} classes"
            + (f" under {cfg.root}" if cfg.root else "")
        )
    if list(test.class_names) != list(train.class_names):
        raise DataError(f"'{cfg.name}': test classes differ from train classes")


def _real(cfg: DatasetConfig, split: Split, pixels: Tensor, mean, std, device: torch.device,
          store: torch.device) -> RealData:
    src = split.index.to(device) if split.index is not None else None
    return RealData(pixels.to(store), split.labels.to(device=device, dtype=torch.long), len(split.class_names),
                    list(split.class_names), mean, std, cfg.name, None, src, pixels=True, device=device)


def load_dataset(
    cfg: DatasetConfig | Mapping, device: str | torch.device = "cpu", cache_dir: str | Path | None = None
) -> tuple[RealData, RealData]:
    """(train, test) RealData for `cfg`: pixels stored, batches normalised on `device`. A run passes its
    validated `ResolvedRun.dataset`; a node (scripts, tests) goes through `dataset_of` first."""
    if not isinstance(cfg, DatasetConfig):
        cfg = dataset_of(cfg)
    loader = get_loader(cfg.name)
    device = canonical_device(device)
    cache = ArtifactCache(cache_dir)
    train, test = loader(cfg, cache)
    _check(cfg, train, test)
    test = _limit(test, None, cfg.max_test)
    if not cfg.zca:  # ZCA is fitted on every train row, the limit applies after the fit
        train = _limit(train, cfg.max_train_per_class, None)
    x_train, x_test = to_pixels(train.images, cfg.image_size), to_pixels(test.images, cfg.image_size)
    store, line = choose_storage(cfg.storage, device, x_train.numel() * x_train.element_size()
                                 + x_test.numel() * x_test.element_size())
    log.info(line)
    mean, std = _stats(cfg, x_train)
    tr = _real(cfg, train, x_train, mean, std, device, store)
    te = _real(cfg, test, x_test, mean, std, device, store)
    if cfg.zca:
        zca = _fit_zca(cfg, train, x_train, tr, cache)
        keep = imf.select(train.labels, cfg.max_train_per_class, None)
        if keep is not None:
            tr = tr.subset(keep)
        tr.zca = te.zca = zca
    return tr, te
