"""Contract of the dataset registry: every registered loader, given a generated folder, either loads it or
says in one line what it needs; none raises a traceback-only error or hangs on a download.

The cases are the registry's entries (a new `@register_dataset` gets them); the generic class-folder
layout must be readable by at least one loader (image_folder), and a loader that needs files it was not
given must name the root it looked in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from dfdistill.schema.options import CONF_DIR, load_option
from dfdistill.data.datasets import load_dataset
from dfdistill.core.errors import ConfigError, DataError
from dfdistill.core.registry import DATASETS

CLASSES = ("ant", "bee")


def class_tree(root: Path, size: int = 8) -> Path:
    """root/{train,test}/<class>/NNN.png, two classes; class c's images have pixel value 40 * (c + 1)."""
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((size, size, 3), 40 * (c + 1), np.uint8), "RGB").save(root / split / name / f"{i:03d}.png")
    return root


def load(name: str, root: Path, tmp_path: Path, **changes):
    """The loader through load_dataset, with the dataset's own YAML (if any) and root/download/changes."""
    base = OmegaConf.to_container(load_option("dataset", name)) if (CONF_DIR / "dataset" / f"{name}.yaml").exists() else {}
    cfg = {**base, "name": name, "root": str(root), "download": False, "decode_workers": 1, **changes}
    return load_dataset(cfg, cache_dir=tmp_path / "cache")


FOLDER = {"channels": 3, "num_classes": len(CLASSES), "mean": [0.5] * 3, "std": [0.5] * 3}  # the generated tree's


def check_split(real) -> None:
    assert len(real) > 0 and real.channels in (1, 3) and torch.isfinite(real.images[:].float()).all()
    assert real.labels.min() >= 0 and real.labels.max() < real.num_classes


def is_one_line_about(exc: Exception, root: Path, name: str) -> bool:
    msg = str(exc)
    return "\n" not in msg and (str(root) in msg or name in msg)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_loader_reads_an_empty_root_or_says_what_it_needs(name, tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    try:
        train, test = load(name, root, tmp_path)
    except (DataError, ConfigError) as exc:
        assert is_one_line_about(exc, root, name), f"{name}: {exc}"
        return
    check_split(train)  # a loader with its data inside the package (digits)
    check_split(test)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_loader_reads_a_generated_class_folder_or_says_what_it_needs(name, tmp_path):
    root = class_tree(tmp_path / "data")
    try:
        train, test = load(name, root, tmp_path, **FOLDER)
    except (DataError, ConfigError) as exc:
        assert is_one_line_about(exc, root, name), f"{name}: {exc}"
        return
    check_split(train)
    check_split(test)
    if train.class_names == list(CLASSES):  # it read the folder: labels follow the sorted class folders
        pixel = train.images[:].float().flatten(1)[:, 0]
        assert torch.equal(pixel > pixel.min(), train.labels.bool()) and len(train) == 6 and len(test) == 4


def test_the_class_folder_layout_has_a_loader(tmp_path):
    """At least one registered loader reads the generic layout, with its classes (image_folder)."""
    root = class_tree(tmp_path / "data")
    readers = []
    for entry in DATASETS:
        try:
            train, _ = load(entry.name, root, tmp_path / entry.name, **FOLDER)
        except (DataError, ConfigError):
            continue
        if train.class_names == list(CLASSES):
            readers.append(entry.name)
    assert "image_folder" in readers
