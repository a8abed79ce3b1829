"""ImageNet-1K loader on tiny generated trees: folder val, flat val + LOC_val_solution.csv, flat val +
devkit ground truth + meta.mat, the Kaggle tree, resize on decode, one-line errors for missing files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dfdistill.data.datasets import load_dataset
from dfdistill.core.errors import DataError

WNIDS = ["n01440764", "n01443537", "n01484850"]  # sorted: labels 0, 1, 2
VALUE = {w: 40 + 80 * i for i, w in enumerate(WNIDS)}  # class -> flat grey level (survives JPEG)
# val image k (1-based) -> wnid; not in class order, so a wrong mapping shows
VAL = {1: "n01484850", 2: "n01440764", 3: "n01443537", 4: "n01440764", 5: "n01484850", 6: "n01443537"}


def _jpeg(path, value, size=(12, 9)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, quality=95)


def make_tree(base, val: str):
    """train/<wnid>/*.JPEG (3 per class, non-square) + val in the layout `val` (folder | flat)."""
    for w in WNIDS:
        for i in range(3):
            _jpeg(base / "train" / w / f"{w}_{i}.JPEG", VALUE[w])
    for k, w in VAL.items():
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        _jpeg(base / "val" / w / name if val == "folder" else base / "val" / name, VALUE[w])
    return base


def write_csv(path):
    rows = [f"ILSVRC2012_val_{k:08d},{w} 1 2 8 8 {w} 0 0 5 5" for k, w in VAL.items()]
    path.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")


def write_devkit(folder):
    """meta.mat with ILSVRC2012_IDs that are NOT the sorted-wnid order, and the ground truth by those IDs."""
    from scipy.io import savemat

    ids = {"n01484850": 1, "n01440764": 2, "n01443537": 3}
    synsets = np.zeros((3,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for row, (w, i) in enumerate(ids.items()):
        synsets[row] = (i, w, 0)
    folder.mkdir(parents=True, exist_ok=True)
    savemat(str(folder / "meta.mat"), {"synsets": synsets})
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(str(ids[VAL[k]]) for k in sorted(VAL)) + "\n")


def cfg(root, **kw):
    return {"name": "imagenet1k", "root": str(root), "num_classes": 3, "image_size": 8,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "decode_workers": 1, **kw}


def check(tr, te, size=8):
    assert tr.class_names == WNIDS and te.class_names == WNIDS
    assert tr.class_counts() == [3, 3, 3] and te.class_counts() == [2, 2, 2]
    assert tr.images.shape[1:] == (3, size, size) and te.images.shape[1:] == (3, size, size)
    for real in (tr, te):
        grey = real._store.float().mean(dim=(1, 2, 3))  # uint8 pixels, resized whole from 12x9
        expect = torch.tensor([VALUE[WNIDS[c]] for c in real.labels.tolist()], dtype=torch.float32)
        assert (grey - expect).abs().max() < 3


@pytest.mark.parametrize("layout", ["folder", "csv", "devkit", "kaggle"])
def test_imagenet_val_layouts_give_the_same_split(tmp_path, layout):
    root = tmp_path / "imagenet"
    if layout == "folder":
        make_tree(root, "folder")
    elif layout == "csv":
        make_tree(root, "flat")
        write_csv(root / "LOC_val_solution.csv")
    elif layout == "devkit":
        make_tree(root, "flat")
        write_devkit(root / "ILSVRC2012_devkit_t12" / "data")
    else:
        make_tree(root / "ILSVRC" / "Data" / "CLS-LOC", "flat")
        write_csv(root / "LOC_val_solution.csv")
    tr, te = load_dataset(cfg(root), cache_dir=tmp_path / "c")
    check(tr, te)


def test_imagenet_default_resolution_is_64(tmp_path):
    root = make_tree(tmp_path / "imagenet", "folder")
    tr, te = load_dataset(cfg(root, image_size=None, max_test=3), cache_dir=tmp_path / "c")
    assert tr.images.shape[1:] == (3, 64, 64) and len(te) == 3


def test_imagenet_missing_files_are_one_line_errors(tmp_path):
    root = make_tree(tmp_path / "imagenet", "flat")
    with pytest.raises(DataError) as info:
        load_dataset(cfg(root), cache_dir=tmp_path / "c")
    msg = str(info.value)
    assert "\n" not in msg and "LOC_val_solution.csv" in msg and "ILSVRC2012_validation_ground_truth.txt" in msg
    assert "val/<wnid>/" in msg
    write_csv(root / "LOC_val_solution.csv")
    _jpeg(root / "val" / "ILSVRC2012_val_00000099.JPEG", 7)  # an image the csv does not label
    with pytest.raises(DataError, match="ILSVRC2012_val_00000099.JPEG has no known class in .*LOC_val_solution.csv"):
        load_dataset(cfg(root), cache_dir=tmp_path / "c")
    empty = tmp_path / "empty"
    (empty / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train is missing: ImageNet-1K needs .*train/<wnid>/\*\.JPEG"):
        load_dataset(cfg(empty), cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(cfg(tmp_path / "nowhere"), cache_dir=tmp_path / "c")
