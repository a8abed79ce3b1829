"""Image-folder trees (image_folder, tinyimagenet, imagenet1k) as file lists, decoded once into a cached uint8 split.

Why: decoding tens of thousands of JPEGs costs seconds to hours, while distillation wants the
whole split as one tensor. A split is decoded once (in parallel, `decode.py`), then stored as ONE
checksummed uint8 file (`split_cache.py`, streamed) keyed by a cheap fingerprint of the tree (file
count and newest mtime, no decode), so later loads are a single read and a changed folder is never
reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from dfdistill.core.artifacts import ArtifactCache, config_key
from dfdistill.data.decode import decode_files
from dfdistill.data.split_cache import SUFFIX, load_cached_split, save_split
from dfdistill.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CACHE_KIND = "datasets"
_FORMAT_VERSION = 2  # bump when the decode path changes pixels, so old caches are not reused


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


def labelled_flat_listing(
    folder: Path, class_of: Callable[[str], Optional[str]], class_names: Sequence[str], label_file: Path
) -> FileList:
    """Images directly in `folder`, each labelled by `class_of(path)` (a class name from `label_file`).

    Ordered by (label, file name) like a class tree, so both val layouts give the same split order.
    """
    label_of = {c: i for i, c in enumerate(class_names)}
    files, newest = scan_dir(folder)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS[:3])}, ...) found in {folder}")
    pairs = []
    for f in files:
        name = class_of(f)
        if name is None or name not in label_of:
            raise DataError(f"{f} has no known class in {label_file}: it must label every image in {folder} "
                            "with one of the train classes")
        pairs.append((label_of[name], os.path.basename(f), f))
    pairs.sort(key=lambda t: (t[0], t[1]))
    newest = max(newest, label_file.stat().st_mtime_ns)
    return FileList(folder, [p for _, _, p in pairs], [lb for lb, _, _ in pairs], list(class_names), newest)


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


def _cache_path(cache: ArtifactCache, key: str) -> Path:
    return cache.root / CACHE_KIND / f"{key}{SUFFIX}"


def load_split(
    listing: FileList,
    image_size: Optional[int],
    channels: int,
    cache: Optional[ArtifactCache],
    per_class: Optional[int] = None,
    total: Optional[int] = None,
    desc: str = "decode",
    workers: Optional[int] = None,
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

    full_path = _cache_path(cache, config_key({**ident, "limit": None})) if cache is not None else None
    hit = load_cached_split(full_path) if full_path is not None else None
    if hit is not None:
        images, labels, meta = hit
        if keep is not None:
            images, labels = images[keep], labels[keep]
        return Split(images, labels, list(meta["class_names"]), keep)

    path, files = full_path, listing.files
    if keep is not None:
        path = _cache_path(cache, config_key({**ident, "limit": [per_class, total]})) if cache is not None else None
        files = [files[i] for i in keep.tolist()]
        labels = labels[keep]
        hit = load_cached_split(path) if path is not None else None
        if hit is not None:
            return Split(hit[0], hit[1], list(hit[2]["class_names"]), keep)

    images = decode_files(files, image_size, channels, desc=desc, workers=workers)
    if path is not None:
        base = str(listing.root)
        rel = [os.path.relpath(p, base) for p in files]
        save_split(path, images, labels, {"class_names": listing.class_names, "files": rel})
    return Split(images, labels, listing.class_names, keep)
