"""ImageNet-1K (ILSVRC-2012) as train/<wnid>/*.JPEG plus val in either layout, resized on decode (default 64 px).

Why 64 px: BiLP (Table 7, Sec. 5.5) states only "ImageNet-1K (1.3M images)", no resolution; the
trajectory methods it runs there follow TESLA, which uses ImageNet-1K pre-downsampled to 64x64 with
the ImageNet mean/std (reference/methods.md sec. 7). Each image is resized whole (no crop), like the
downsampled-ImageNet variants, and the decoded uint8 split is cached (15.7 GB for train at 64 px).

val layouts: val/<wnid>/*.JPEG (the folder form), or all images directly in val/ with labels from
the devkit: Kaggle's LOC_val_solution.csv, or ILSVRC2012_validation_ground_truth.txt + meta.mat
(ILSVRC2012_ID -> WNID). A Kaggle tree (root/ILSVRC/Data/CLS-LOC/{train,val}) is found as well.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path
from typing import Callable, Optional

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.schema.groups import DatasetConfig
from dfdistill.data import image_folder as imf
from dfdistill.data.image_folder import Split
from dfdistill.data.loaders.folders import load_class_folders, test_split, train_split
from dfdistill.data.registry import register_dataset
from dfdistill.data.spec import require_root
from dfdistill.core.errors import DataError

DEFAULT_SIZE = 64
CSV_NAME = "LOC_val_solution.csv"
GT_NAME = "ILSVRC2012_validation_ground_truth.txt"
META_NAME = "meta.mat"


def data_root(root: Path) -> Path:
    """The folder holding train/ and val/: root itself, or the Kaggle tree's ILSVRC/Data/CLS-LOC."""
    kaggle = root / "ILSVRC" / "Data" / "CLS-LOC"
    return kaggle if not (root / "train").is_dir() and (kaggle / "train").is_dir() else root


def _find(name: str, places: list[Path]) -> Optional[Path]:
    return next((p / name for p in places if (p / name).is_file()), None)


def _labels_from_csv(path: Path) -> Callable[[str], Optional[str]]:
    """Kaggle's LOC_val_solution.csv: ImageId,PredictionString ('<wnid> x0 y0 x1 y1 <wnid> ...')."""
    wnid_of: dict[str, str] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            boxes = (row.get("PredictionString") or "").split()
            if row.get("ImageId") and boxes:
                wnid_of[row["ImageId"]] = boxes[0]
    return lambda f: wnid_of.get(os.path.splitext(os.path.basename(f))[0])


def _labels_from_ground_truth(gt: Path, meta: Path) -> Callable[[str], Optional[str]]:
    """Devkit: line k of the ground truth is the ILSVRC2012_ID of ILSVRC2012_val_<k>; meta.mat maps IDs to WNIDs."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise DataError(f"reading {meta} needs scipy (pip install scipy), or use {CSV_NAME} / val/<wnid>/ folders") from exc
    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    wnid_of_id = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}
    ids = [int(t) for t in gt.read_text().split()]
    number = re.compile(r"(\d+)\D*$")

    def class_of(f: str) -> Optional[str]:
        m = number.search(os.path.basename(f))
        k = int(m.group(1)) if m else 0
        return wnid_of_id.get(ids[k - 1]) if 1 <= k <= len(ids) else None

    return class_of


def _flat_val(root: Path, val_dir: Path, classes: list[str]) -> imf.FileList:
    places = [root, root / "ILSVRC2012_devkit_t12" / "data", val_dir.parent]
    found_csv = _find(CSV_NAME, places)
    if found_csv is not None:
        return imf.labelled_flat_listing(val_dir, _labels_from_csv(found_csv), classes, found_csv)
    gt, meta = _find(GT_NAME, places), _find(META_NAME, places)
    if gt is not None and meta is not None:
        return imf.labelled_flat_listing(val_dir, _labels_from_ground_truth(gt, meta), classes, gt)
    where = ", ".join(str(p) for p in dict.fromkeys(places))
    raise DataError(f"{val_dir} holds images without class folders and no val labels were found: put {CSV_NAME}, "
                    f"or {GT_NAME} + {META_NAME} from the ILSVRC2012 devkit, in one of {where}; "
                    f"or sort val into val/<wnid>/")


@register_dataset("imagenet1k", label="ImageNet-1K")
def load_imagenet1k(cfg: DatasetConfig, cache: Optional[ArtifactCache] = None) -> tuple[Split, Split]:
    """ImageNet-1K train + val (val is the test split), each image resized whole to image_size (default 64)."""
    root = require_root(cfg, "ImageNet-1K as train/<wnid>/*.JPEG and val/ (val/<wnid>/*.JPEG, or val/*.JPEG "
                             f"with {CSV_NAME} or the devkit's {GT_NAME} + {META_NAME})")
    cfg = dataclasses.replace(cfg, image_size=cfg.image_size or DEFAULT_SIZE)
    base = data_root(root)
    train_dir, val_dir = base / "train", base / "val"
    for d in (train_dir, val_dir):
        if not d.is_dir():
            raise DataError(f"{d} is missing: ImageNet-1K needs {base}/train/<wnid>/*.JPEG and {base}/val/")
    has_class_dirs = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(val_dir))
    if has_class_dirs:
        return load_class_folders(cfg, cache, train_dir, val_dir)
    classes = imf.class_folders(train_dir)
    train = train_split(cfg, cache, imf.scan_class_tree(train_dir, classes))
    return train, test_split(cfg, cache, _flat_val(root, val_dir, classes))
