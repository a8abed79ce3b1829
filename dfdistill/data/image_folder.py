"""Decode image-folder trees (image_folder, tinyimagenet, imagenet1k) into one cached uint8 tensor.

Why: decoding tens of thousands of JPEGs costs seconds to minutes, while distillation wants the
whole split as one tensor. A split is decoded once (torchvision's C decoders, PIL as fallback),
then stored as ONE checksummed uint8 file keyed by a cheap fingerprint of the tree (file count and
newest mtime, no decode), so later loads are a single read and a changed folder is never reused.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from dfdistill.artifacts import ArtifactCache, config_key
from dfdistill.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CACHE_KIND = "datasets"
_FORMAT_VERSION = 1  # bump when the decode path changes pixels, so old caches are not reused


@dataclass
class FileList:
    """The files of one split in label order, plus the fingerprint that keys its cache."""

    root: Path  # the split folder, e.g. <root>/train
    files: list[str]  # plain strings: pathlib objects cost ~20 us each, i.e. seconds for ImageNet
    labels: list[int]
    class_names: list[str]
    max_mtime_ns: int


@dataclass
class Split:
    """A decoded split: uint8 (N, C, H, W) images in [0, 255] and int64 labels."""

    images: Tensor
    labels: Tensor
    class_names: list[str]
    index: Optional[Tensor] = None  # positions of these rows in the full split (None = all rows, in order)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def scan_dir(folder: Path) -> tuple[list[str], int]:
    """Image file paths directly in `folder` (sorted by name) and the newest mtime among them and the folder."""
    newest = folder.stat().st_mtime_ns
    found: list[str] = []
    with os.scandir(folder) as it:
        for entry in it:
            if _is_image(entry.name) and entry.is_file():
                found.append(entry.path)
                newest = max(newest, entry.stat().st_mtime_ns)
    found.sort()
    return found, newest


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the sub-folders of `split_dir` (the classes of an ImageFolder tree)."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist: expected one sub-folder of images per class there")
    names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataError(f"{split_dir} has no class sub-folders: expected {split_dir}/<class>/<image files>")
    return names


def scan_class_tree(split_dir: Path, class_names: Sequence[str], sub: str = "") -> FileList:
    """Files of `split_dir/<class>/<sub>/*` for each class in order (label = position in class_names)."""
    files: list[str] = []
    labels: list[int] = []
    newest = split_dir.stat().st_mtime_ns
    for label, name in enumerate(class_names):
        folder = split_dir / name / sub if sub else split_dir / name
        if not folder.is_dir():
            raise DataError(f"class folder {folder} is missing: every class needs its own image folder")
        found, mtime = scan_dir(folder)
        files += found
        labels += [label] * len(found)
        newest = max(newest, mtime)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS[:3])}, ...) found under {split_dir}")
    return FileList(split_dir, files, labels, list(class_names), newest)


def _tv_decoder(channels: int) -> Optional[Callable[[str], Tensor]]:
    """torchvision's C decoder (about 3x faster than PIL on small JPEGs), or None where it is unavailable."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # decoding is deprecated in torchvision 0.29 and may disappear
        return None
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    return lambda path: decode_image(read_file(path), mode=mode)


def _decode_pil(path: str, channels: int) -> Tensor:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a data problem for the user
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def decode_files(files: Sequence[str], image_size: Optional[int], channels: int, desc: str = "decode") -> Tensor:
    """Decode `files` into one (N, C, S, S) uint8 tensor, resizing to image_size when it is given."""
    from torchvision.transforms.v2.functional import resize
    from tqdm import tqdm

    fast = _tv_decoder(channels)
    out: Optional[Tensor] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 warns on every decode call
        for i, path in enumerate(tqdm(files, desc=desc, unit="img", disable=None, mininterval=1.0)):
            img = None
            if fast is not None:
                try:
                    img = fast(path)
                except (RuntimeError, ValueError):
                    img = None  # formats/modes libjpeg/libpng cannot handle: PIL below
            if img is None or img.shape[0] != channels:
                img = _decode_pil(path, channels)
            if image_size is not None and tuple(img.shape[-2:]) != (image_size, image_size):
                img = resize(img, [image_size, image_size], antialias=True)
            if out is None:
                out = torch.empty((len(files), *img.shape), dtype=torch.uint8)
            elif img.shape != out.shape[1:]:
                raise DataError(
                    f"{path} is {img.shape[-1]}x{img.shape[-2]} but {files[0]} is {out.shape[-1]}x{out.shape[-2]}: "
                    "set dataset.image_size=<pixels> to resize all images to one size"
                )
            out[i] = img
    if out is None:
        raise DataError("no images to decode")
    return out


def rank_in_class(labels: Tensor) -> Tensor:
    """For each row, how many earlier rows share its label (0 for the first of each class)."""
    n = labels.numel()
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    pos = torch.arange(n)
    is_start = torch.ones(n, dtype=torch.bool)
    is_start[1:] = sorted_labels[1:] != sorted_labels[:-1]
    start = torch.cummax(torch.where(is_start, pos, torch.zeros_like(pos)), 0).values
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = pos - start
    return rank


def first_per_class(labels: Tensor, n: int) -> Tensor:
    """Positions of the first n rows of every class, in their original order."""
    return torch.nonzero(rank_in_class(labels.cpu()) < n).flatten()


def balanced_first(labels: Tensor, n: int) -> Tensor:
    """Positions of n rows taken round-robin over classes (first of each class, then second, ...)."""
    labels = labels.cpu()
    if n >= labels.numel():
        return torch.arange(labels.numel())
    key = rank_in_class(labels) * (int(labels.max()) + 1) + labels
    chosen = torch.argsort(key, stable=True)[:n]
    return torch.sort(chosen).values


def select(labels: Tensor, per_class: Optional[int], total: Optional[int]) -> Optional[Tensor]:
    """Rows kept by max_train_per_class / max_test (None = keep everything)."""
    if per_class is not None:
        return first_per_class(labels, int(per_class))
    if total is not None:
        return balanced_first(labels, int(total))
    return None


def load_split(
    listing: FileList,
    image_size: Optional[int],
    channels: int,
    cache: Optional[ArtifactCache],
    per_class: Optional[int] = None,
    total: Optional[int] = None,
    desc: str = "decode",
) -> Split:
    """The decoded split, from cache when possible; with a limit and no full cache, decode only the kept rows."""
    ident = {
        "v": _FORMAT_VERSION,
        "root": str(listing.root.resolve()),
        "image_size": image_size,
        "channels": channels,
        "n_files": len(listing.files),
        "max_mtime_ns": listing.max_mtime_ns,
        "classes": listing.class_names,
    }
    labels = torch.tensor(listing.labels, dtype=torch.long)
    keep = select(labels, per_class, total)

    full_key = config_key({**ident, "limit": None})
    hit = cache.load(CACHE_KIND, full_key) if cache is not None else None
    if hit is not None:
        images, labels = hit["images"], hit["labels"]
        if keep is not None:
            images, labels = images[keep], labels[keep]
        return Split(images, labels, list(hit["class_names"]), keep)

    key = full_key
    files = listing.files
    if keep is not None:
        key = config_key({**ident, "limit": [per_class, total]})
        files = [files[i] for i in keep.tolist()]
        labels = labels[keep]
        hit = cache.load(CACHE_KIND, key) if cache is not None else None
        if hit is not None:
            return Split(hit["images"], hit["labels"], list(hit["class_names"]), keep)

    images = decode_files(files, image_size, channels, desc=desc)
    if cache is not None:
        base = str(listing.root)
        rel = [os.path.relpath(p, base) for p in files]
        cache.save(CACHE_KIND, key, {"images": images, "labels": labels, "class_names": listing.class_names, "files": rel})
    return Split(images, labels, listing.class_names, keep)
