"""Tiny ImageNet (tiny-imagenet-200): train/<wnid>/images/*, val/images/* labelled by val_annotations.txt."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.schema.groups import DatasetConfig
from dfdistill.data import image_folder as imf
from dfdistill.data.image_folder import Split
from dfdistill.data.registry import register_dataset
from dfdistill.data.loaders.folders import test_split, train_split
from dfdistill.data.spec import require_root
from dfdistill.core.errors import DataError


def _tiny_val_listing(root: Path, classes: list[str]) -> imf.FileList:
    """root/val/images/* labelled by root/val/val_annotations.txt (filename<TAB>wnid<TAB>...)."""
    ann = root / "val" / "val_annotations.txt"
    img_dir = root / "val" / "images"
    if not ann.is_file() or not img_dir.is_dir():
        raise DataError(f"Tiny ImageNet validation split missing: expected {ann} and {img_dir}")
    wnid_of: dict[str, str] = {}
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            wnid_of[parts[0]] = parts[1]
    return imf.labelled_flat_listing(img_dir, lambda f: wnid_of.get(os.path.basename(f)), classes, ann)


@register_dataset("tinyimagenet", label="TinyImageNet")
def load_tinyimagenet(cfg: DatasetConfig, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """The original tiny-imagenet-200 tree; the labelled val split serves as the test split."""
    root = require_root(cfg, "the tiny-imagenet-200 tree (wnids.txt, train/<wnid>/images/, val/images/, "
                             "val/val_annotations.txt) from http://cs231n.stanford.edu/tiny-imagenet-200.zip")
    wnids_file = root / "wnids.txt"
    if wnids_file.is_file():
        classes = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())
    else:
        classes = imf.class_folders(root / "train")
    train = train_split(cfg, cache, imf.scan_class_tree(root / "train", classes, sub="images"))
    return train, test_split(cfg, cache, _tiny_val_listing(root, classes))
