"""The saved synthetic set (synthetic.pt): its documented layout, writing, reading and checking.

Why a documented layout: `stage=eval` evaluates any saved set -- ours or one from another codebase --
without distilling again, so the file must say everything evaluation needs and nothing more:

    {"images": float N x C x H x W,  # the dataset's normalised space (mean/std, then ZCA when
                                     # dataset.zca=true), or [0,1] pixels when "pixels" is true
     "labels": int N (class index) or float N x K (soft targets over the K classes),
     "lr":     optional float > 0,   # a learned evaluation lr (MTT/TESLA); used when eval.lr is null
     "pixels": optional bool,        # default false
     "meta":   optional dict}        # written by dfdistill: method, dataset, ipc, distill_key, ...

dfdistill also stores "mean"/"std" (the normalisation the images are in) and "zca"; when present they
are checked against the dataset the evaluation loads, so a set is never evaluated in the wrong space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from dfdistill.core.artifacts import atomic_writer, config_key
from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError, DataError

SYNTHETIC_FILE = "synthetic.pt"


@dataclass
class SyntheticSet:
    images: Tensor
    labels: Tensor
    lr: Optional[float] = None
    pixels: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    whitened: bool = False  # the file says its images went through ZCA
    source: Optional[Path] = None

    def key(self) -> str:
        """The set's identity: the distillation that made it, else a hash of its content."""
        return self.meta.get("distill_key") or config_key({"images": self.images, "labels": self.labels,
                                                           "lr": self.lr, "pixels": self.pixels})

    def per_class(self) -> int:
        """Images per class: dfdistill's recorded IPC, else N / (number of classes the labels use)."""
        if self.meta.get("ipc"):
            return int(self.meta["ipc"])
        k = self.labels.shape[1] if self.labels.dim() == 2 else int((torch.bincount(self.labels) > 0).sum())
        return max(1, self.images.shape[0] // max(k, 1))


def save_synthetic(path: Path, syn: SyntheticSet, real: RealData) -> None:
    """Write the set in the documented layout (atomically: a reader sees the old file or the new one)."""
    obj = {"images": syn.images.detach().cpu(), "labels": syn.labels.detach().cpu(), "lr": syn.lr, "pixels": False,
           "meta": syn.meta, "mean": tuple(real.mean), "std": tuple(real.std),
           "zca": None if real.zca is None else real.zca.state_dict()}
    with atomic_writer(path) as fh:
        torch.save(obj, fh)


def synthetic_path(where: str | Path) -> Path:
    """`where` is a synthetic.pt-style file or a run dir holding synthetic.pt."""
    p = Path(str(where)).expanduser()
    if p.is_dir():
        p = p / SYNTHETIC_FILE
        if not p.exists():
            raise ConfigError(f"synthetic={where} holds no {SYNTHETIC_FILE}; run stage=distill there first, "
                              "or point synthetic= at a saved .pt file")
    elif not p.exists():
        raise ConfigError(f"synthetic={where} does not exist; give a synthetic.pt file or the run dir holding one")
    return p.resolve()


def load_synthetic(where: str | Path) -> SyntheticSet:
    """Read and check the documented layout; anything else is a one-line DataError saying what is wrong."""
    path = synthetic_path(where)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip/format errors of a foreign file
        # torch's own text (weights-only advice, pages long) would be cut mid-word: name the kind of failure only
        raise DataError(f"synthetic={path} is not a saved set (torch.load cannot read it: {type(exc).__name__}); "
                        "give a run dir or the synthetic.pt a run wrote, or torch.save a dict "
                        "{'images': N x C x H x W float, 'labels': N int}") from None
    if not isinstance(obj, dict) or not {"images", "labels"} <= set(obj):
        raise DataError(f"synthetic={path} must hold a dict with 'images' and 'labels' (see README: synthetic.pt layout)")
    images, labels, lr = obj["images"], obj["labels"], obj.get("lr")
    if not (isinstance(images, Tensor) and images.dim() == 4 and images.is_floating_point()):
        raise DataError(f"synthetic={path}: 'images' must be a float tensor N x C x H x W, got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    hard = isinstance(labels, Tensor) and labels.dim() == 1 and not labels.is_floating_point()
    soft = isinstance(labels, Tensor) and labels.dim() == 2 and labels.is_floating_point()
    if not (hard or soft) or labels.shape[0] != images.shape[0]:
        raise DataError(f"synthetic={path}: 'labels' must be N={images.shape[0]} class indices (int) or N x K soft "
                        f"targets (float), got {getattr(labels, 'dtype', type(labels).__name__)} "
                        f"{tuple(getattr(labels, 'shape', ()))}")
    if not torch.isfinite(images).all():
        raise DataError(f"synthetic={path}: 'images' contains NaN/Inf values")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise DataError(f"synthetic={path}: 'lr' must be a positive number or absent, got {lr!r}")
    return SyntheticSet(images.float(), labels, None if lr is None else float(lr), bool(obj.get("pixels", False)),
                        dict(obj.get("meta") or {}), _stats(obj.get("mean")), _stats(obj.get("std")),
                        obj.get("zca") is not None, path)


def _stats(v: Any) -> Optional[tuple[float, ...]]:
    return None if v is None else tuple(float(x) for x in v)


def fit_to_data(syn: SyntheticSet, real: RealData, dataset: str) -> SyntheticSet:
    """The set in `real`'s model space on its device, after checking shape, classes and normalisation."""
    made_for = f" (it was made for dataset={syn.meta['dataset']}; add dataset={syn.meta['dataset']})" if syn.meta.get("dataset") else ""
    want = (real.channels, real.image_size, real.image_size)
    if tuple(syn.images.shape[1:]) != want:
        raise DataError(f"synthetic images are {'x'.join(map(str, syn.images.shape[1:]))} but dataset={dataset} gives "
                        f"{'x'.join(map(str, want))}{made_for}")
    k = real.num_classes
    if syn.labels.dim() == 2 and syn.labels.shape[1] != k or syn.labels.dim() == 1 and (
            syn.labels.numel() and (int(syn.labels.min()) < 0 or int(syn.labels.max()) >= k)):
        raise DataError(f"synthetic labels do not fit dataset={dataset}'s {k} classes{made_for}")
    images = syn.images.to(real.device)
    if syn.pixels:
        if images.min() < -1e-3 or images.max() > 1 + 1e-3:
            raise DataError("synthetic set says pixels=true but its images are outside [0, 1]; save normalised "
                            "images without the flag, or pixels in [0, 1]")
        images = real.normalize_pixels(images)
    elif syn.mean is not None and syn.whitened != (real.zca is not None):  # a dfdistill file says its space
        raise DataError(f"synthetic images are {'' if syn.whitened else 'not '}ZCA-whitened but dataset={dataset} is "
                        f"{'' if real.zca is not None else 'not '}; set dataset.zca={str(syn.whitened).lower()}")
    elif syn.mean is not None and syn.std is not None and not (_close(syn.mean, real.mean) and _close(syn.std, real.std)):
        if real.zca is not None:
            raise DataError(f"synthetic images were whitened with other statistics than dataset={dataset}'s "
                            f"(mean {syn.mean} vs {tuple(round(m, 4) for m in real.mean)}){made_for}; "
                            "evaluate with the dataset settings it was made with")
        # same pixels, another mean/std (e.g. the stats of a smaller train split): an exact change of space
        m0, s0 = (torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in (syn.mean, syn.std))
        images = real.normalize_pixels(images * s0 + m0)
    return SyntheticSet(images, syn.labels.to(real.device), syn.lr, False, syn.meta, tuple(real.mean), tuple(real.std),
                        real.zca is not None, syn.source)


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-4 * max(1.0, abs(y)) for x, y in zip(a, b))
