"""Generic image folders: root/{train,test|val}/<class>/<images> (image_folder, cifar10_jpeg)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.schema.groups import DatasetConfig
from dfdistill.data import image_folder as imf
from dfdistill.data.image_folder import Split
from dfdistill.data.registry import register_dataset
from dfdistill.data.spec import decode_train_limit, require_root
from dfdistill.core.errors import DataError


def train_split(cfg: DatasetConfig, cache: Optional[ArtifactCache], listing: imf.FileList) -> Split:
    """The decoded train split (decoding stops at max_train_per_class unless ZCA needs every row)."""
    return imf.load_split(listing, cfg.image_size, cfg.channels or 3, cache, per_class=decode_train_limit(cfg),
                          desc=f"{cfg.name} train", workers=cfg.decode_workers)


def test_split(cfg: DatasetConfig, cache: Optional[ArtifactCache], listing: imf.FileList) -> Split:
    """The decoded test split (decoding stops at a class-balanced max_test)."""
    return imf.load_split(listing, cfg.image_size, cfg.channels or 3, cache, total=cfg.max_test,
                          desc=f"{cfg.name} test", workers=cfg.decode_workers)


def load_class_folders(cfg: DatasetConfig, cache: Optional[ArtifactCache], train_dir: Path, test_dir: Path) -> tuple[Split, Split]:
    """train_dir/<class>/* and test_dir/<class>/* with the same classes (train's sorted folder names)."""
    classes = imf.class_folders(train_dir)
    test_classes = imf.class_folders(test_dir)
    if test_classes != classes:
        diff = sorted(set(classes) ^ set(test_classes)) or ["(same names, different order)"]
        raise DataError(
            f"class folders differ between {train_dir} and {test_dir}: {', '.join(diff[:10])}; both need the same classes"
        )
    return train_split(cfg, cache, imf.scan_class_tree(train_dir, classes)), test_split(cfg, cache, imf.scan_class_tree(test_dir, classes))


@register_dataset("image_folder")
@register_dataset("cifar10_jpeg", label="CIFAR10 (JPEG)")
def load_image_folder(cfg: DatasetConfig, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """Any root/{train,test|val}/<class>/<images>; classes are train's sorted folder names."""
    root = require_root(cfg, "train/<class>/<images> and test/<class>/<images> (or val/)")
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    if not (root / "train").is_dir() or not test_dir.is_dir():
        raise DataError(f"{root} must contain train/ and test/ (or val/) folders with one sub-folder per class")
    return load_class_folders(cfg, cache, root / "train", test_dir)
