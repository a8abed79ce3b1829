"""Dataset loading: fixed digits split, image-folder decode + cache, clear errors, row limits."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfdistill.data import image_folder as imf
from dfdistill.data.datasets import load_dataset
from dfdistill.data.registry import dataset_names
from dfdistill.data.split_cache import read_split
from dfdistill.core.errors import ConfigError, DataError

from conftest import ROOT as REPO
CIFAR10_JPEG = (REPO / ".." / "shared" / "data" / "cifar10-jpeg").resolve()
REQUIRED = {
    "name", "root", "download", "image_size", "channels", "num_classes", "mean", "std",
    "zca", "zca_eps", "zca_mode", "max_train_per_class", "max_test", "dsa_strategy", "storage",
}


def digits_cfg(**kw):
    return {"name": "digits", "root": None, "image_size": 28, "channels": 1, "num_classes": 10, **kw}


# ------------------------------------------------------------------------------------------------ digits


def test_digits_fixed_stratified_split_and_normalization(tmp_path):
    from sklearn.datasets import load_digits

    tr, te = load_dataset(digits_cfg(), cache_dir=tmp_path)
    assert (len(tr), len(te)) == (1437, 360)
    assert tr.images.shape[1:] == (1, 28, 28) and tr.images.dtype == torch.float32
    assert tr.labels.dtype == torch.int64 and tr.class_names == [str(i) for i in range(10)]
    full = np.bincount(load_digits().target, minlength=10)
    test_counts = np.array(te.class_counts())
    assert (np.array(tr.class_counts()) + test_counts == full).all()
    assert (np.abs(test_counts - 0.2 * full) <= 1).all()  # stratified
    assert abs(tr.images[:].mean().item()) < 1e-4 and abs(tr.images[:].std().item() - 1) < 1e-2
    assert tr.mean == te.mean and len(tr.mean) == 1
    tr2, te2 = load_dataset(digits_cfg(), cache_dir=tmp_path)
    assert torch.equal(tr.images[:], tr2.images[:]) and torch.equal(te.labels, te2.labels)


def test_class_indices_partition_rows(tmp_path):
    tr, _ = load_dataset(digits_cfg(), cache_dir=tmp_path)
    seen = torch.cat(tr.class_indices)
    assert torch.equal(torch.sort(seen).values, torch.arange(len(tr)))
    for c, ix in enumerate(tr.class_indices):
        assert ix.numel() > 0 and bool((tr.labels[ix] == c).all())


def test_row_limits_keep_first_per_class_and_balanced_test(tmp_path):
    fixed = {"mean": [0.5], "std": [0.5]}
    full_tr, full_te = load_dataset(digits_cfg(**fixed), cache_dir=tmp_path)
    tr, te = load_dataset(digits_cfg(max_train_per_class=5, max_test=25, **fixed), cache_dir=tmp_path)
    assert tr.class_counts() == [5] * 10
    assert sorted(te.class_counts(), reverse=True) == [3] * 5 + [2] * 5
    assert torch.equal(tr.images[:], full_tr.images[tr.source_index])
    assert torch.equal(te.labels, full_te.labels[te.source_index])
    for c in range(10):  # the *first* five of each class
        assert torch.equal(tr.source_index[tr.labels == c], full_tr.class_indices[c][:5])


def test_digits_zca_is_cached_and_invertible(tmp_path):
    pytest.importorskip("dfdistill.data.zca")
    cfg = digits_cfg(image_size=8, zca=True, zca_eps=0.1)
    tr, te = load_dataset(cfg, cache_dir=tmp_path)
    assert tr.zca is not None and tr.mean == (0.0,) and tr.std == (1.0,)
    assert len(list((tmp_path / "zca").glob("*.pt"))) == 1
    raw, _ = load_dataset(digits_cfg(image_size=8, mean=[0.0], std=[1.0]), cache_dir=tmp_path)
    assert torch.allclose(tr.denormalize(tr.images[:]), raw.images[:], atol=1e-3)
    tr2, te2 = load_dataset(cfg, cache_dir=tmp_path)
    assert torch.allclose(tr2.images[:], tr.images[:], atol=1e-5) and torch.allclose(te2.images[:], te.images[:], atol=1e-5)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="valid names: .*digits"):
        load_dataset({"name": "nope"})


# ------------------------------------------------------------------------------------------------ image folders


def _png(path: Path, value: int, size: int = 8, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)


def make_folder(root: Path, classes=("zebra", "ant", "moth"), n=4, test="test", size=8) -> Path:
    """Class c (sorted position) image i has every pixel = 20*c + i + 1, so labels are checkable."""
    for split, count in (("train", n), (test, 2)):
        for name in classes:
            c = sorted(classes).index(name)
            for i in range(count):
                _png(root / split / name / f"{i:03d}.png", 20 * c + i + 1, size)
    return root


def folder_cfg(root, **kw):
    return {"name": "image_folder", "root": str(root), "channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1], **kw}


def _pixel_ids(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0, 0, 0] * 255).round().long()


def test_image_folder_loads_sorted_classes_and_labels(tmp_path):
    root = make_folder(tmp_path / "data")
    tr, te = load_dataset(folder_cfg(root), cache_dir=tmp_path / "cache")
    assert tr.class_names == ["ant", "moth", "zebra"] and te.class_names == tr.class_names
    assert (len(tr), len(te)) == (12, 6) and tr.images.shape[1:] == (3, 8, 8)
    assert torch.equal(_pixel_ids(tr.images) // 20, tr.labels)
    assert torch.equal(_pixel_ids(te.images) // 20, te.labels)
    assert torch.equal(_pixel_ids(tr.images[tr.labels == 1]), torch.tensor([21, 22, 23, 24]))


def test_image_folder_computes_stats_and_accepts_val_and_grayscale(tmp_path):
    root = make_folder(tmp_path / "data", test="val")
    tr, te = load_dataset({"name": "image_folder", "root": str(root), "channels": 1}, cache_dir=tmp_path / "c")
    assert tr.images.shape[1:] == (1, 8, 8) and len(te) == 6
    assert abs(tr.images[:].mean().item()) < 1e-4 and abs(tr.images[:].std().item() - 1) < 1e-2


def test_image_folder_second_load_reads_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    tr, te = load_dataset(folder_cfg(root), cache_dir=cache)
    assert len(list((cache / "datasets").glob("*.split"))) == 2

    def boom(*a, **k):
        raise AssertionError("decoded although a cache exists")

    monkeypatch.setattr(imf, "decode_files", boom)
    tr2, te2 = load_dataset(folder_cfg(root), cache_dir=cache)
    assert torch.equal(tr.images[:], tr2.images[:]) and torch.equal(te.labels, te2.labels)
    tr3, _ = load_dataset(folder_cfg(root, max_train_per_class=2), cache_dir=cache)  # subset of the full cache
    assert tr3.class_counts() == [2, 2, 2]


def test_image_folder_changed_tree_invalidates_cache(tmp_path):
    root = make_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    load_dataset(folder_cfg(root), cache_dir=cache)
    _png(root / "train" / "ant" / "999.png", 5)
    tr, _ = load_dataset(folder_cfg(root), cache_dir=cache)
    assert len(tr) == 13


def test_corrupt_cache_is_reported_deleted_and_rebuilt(tmp_path, capsys):
    root = make_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    tr, _ = load_dataset(folder_cfg(root), cache_dir=cache)
    files = sorted((cache / "datasets").glob("*.split"))
    for f in files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    capsys.readouterr()
    tr2, _ = load_dataset(folder_cfg(root), cache_dir=cache)
    out = capsys.readouterr().out
    assert out.count("rebuilding") == len(files)
    assert torch.equal(tr.images[:], tr2.images[:])
    for f in files:
        read_split(f)  # rebuilt and valid again


def test_max_train_per_class_limits_decoding(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data", n=6)
    decoded: list[int] = []
    real_decode = imf.decode_files

    def counting(files, *a, **k):
        decoded.append(len(files))
        return real_decode(files, *a, **k)

    monkeypatch.setattr(imf, "decode_files", counting)
    tr, te = load_dataset(folder_cfg(root, max_train_per_class=2, max_test=4), cache_dir=tmp_path / "c")
    assert decoded == [6, 4]
    assert tr.class_counts() == [2, 2, 2] and len(te) == 4
    assert torch.equal(_pixel_ids(tr.images[tr.labels == 2]), torch.tensor([41, 42]))


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'missing'} does not exist")):
        load_dataset(folder_cfg(tmp_path / "missing"), cache_dir=tmp_path / "c")
    bad = make_folder(tmp_path / "bad")
    _png(bad / "test" / "extra" / "0.png", 1)
    with pytest.raises(DataError, match="extra"):
        load_dataset(folder_cfg(bad), cache_dir=tmp_path / "c")
    mixed = make_folder(tmp_path / "mixed")
    _png(mixed / "train" / "ant" / "big.png", 3, size=10)
    with pytest.raises(DataError, match="image_size"):
        load_dataset(folder_cfg(mixed), cache_dir=tmp_path / "c")
    tr, _ = load_dataset(folder_cfg(mixed, image_size=8), cache_dir=tmp_path / "c")
    assert tr.images.shape[1:] == (3, 8, 8)
    with pytest.raises(DataError, match="num_classes=5"):
        load_dataset(folder_cfg(make_folder(tmp_path / "ok"), num_classes=5), cache_dir=tmp_path / "c")


def test_pil_fallback_and_undecodable_file(tmp_path):
    root = make_folder(tmp_path / "data")
    Image.fromarray(np.full((8, 8, 3), 7, dtype=np.uint8)).save(root / "train" / "ant" / "z.bmp")
    tr, _ = load_dataset(folder_cfg(root), cache_dir=tmp_path / "c")
    assert len(tr) == 13 and 7 in _pixel_ids(tr.images).tolist()
    (root / "train" / "ant" / "zz.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image .*zz.jpg"):
        load_dataset(folder_cfg(root), cache_dir=tmp_path / "c")


def test_tinyimagenet_val_labels_from_annotations(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for c, w in enumerate(sorted(wnids)):
        for i in range(3):
            _png(root / "train" / w / "images" / f"{w}_{i}.png", 20 * c + i + 1)
    ann = []
    for j, (w, value) in enumerate([("n02", 21), ("n01", 1), ("n02", 22), ("n01", 2)]):
        _png(root / "val" / "images" / f"val_{j}.png", value)
        ann.append(f"val_{j}.png\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    cfg = {"name": "tinyimagenet", "root": str(root), "num_classes": 2, "mean": [0, 0, 0], "std": [1, 1, 1]}
    tr, te = load_dataset(cfg, cache_dir=tmp_path / "c")
    assert tr.class_names == ["n01", "n02"] and tr.class_counts() == [3, 3]
    assert te.class_counts() == [2, 2]
    assert torch.equal(_pixel_ids(te.images) // 20, te.labels)
    with pytest.raises(DataError, match="tiny-imagenet-200"):
        load_dataset({**cfg, "root": str(tmp_path / "nowhere")}, cache_dir=tmp_path / "c")


# ------------------------------------------------------------------------------------------------ torchvision


@pytest.mark.parametrize(
    "name,expect",
    [
        ("mnist", ["train-images-idx3-ubyte.gz", "MNIST/raw"]),
        ("fashion_mnist", ["train-images-idx3-ubyte.gz", "FashionMNIST/raw"]),
        ("svhn", ["train_32x32.mat"]),
        ("cifar10", ["cifar-10-python.tar.gz", "cifar-10-batches-py"]),
        ("cifar100", ["cifar-100-python.tar.gz", "cifar-100-python"]),
    ],
)
def test_torchvision_missing_files_give_one_line_instructions(tmp_path, name, expect):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset({"name": name, "root": str(root), "download": False}, cache_dir=tmp_path / "c")
    msg = str(info.value)
    assert "\n" not in msg and str(root) in msg and "download=true" in msg
    for part in expect:
        assert part in msg


def test_relative_root_resolves_against_cwd(tmp_path, monkeypatch):
    make_folder(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    tr, _ = load_dataset(folder_cfg("rel"), cache_dir=tmp_path / "c")
    assert len(tr) == 12


# ------------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "dataset").glob("*.yaml")), ids=lambda p: p.stem)
def test_dataset_yaml_complete(path):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.load(path)
    assert REQUIRED <= set(cfg.keys()) and "_target_" not in cfg
    assert cfg.name == path.stem and cfg.name in dataset_names()
    if cfg.mean is not None:
        assert len(cfg.mean) == len(cfg.std) == cfg.channels and min(cfg.std) > 0


def test_every_registered_dataset_has_a_yaml():
    names = {p.stem for p in (REPO / "conf" / "dataset").glob("*.yaml")}
    assert set(dataset_names()) <= names


@pytest.mark.skipif(not (CIFAR10_JPEG / "train").is_dir(), reason="shared cifar10-jpeg folder absent")
def test_cifar10_jpeg_smoke(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.load(REPO / "conf" / "dataset" / "cifar10_jpeg.yaml")
    cfg.root = str(CIFAR10_JPEG)
    cfg.max_train_per_class, cfg.max_test = 20, 50
    t0 = time.time()
    tr, te = load_dataset(cfg, cache_dir=tmp_path)
    assert time.time() - t0 < 60
    assert tr.class_names[0] == "airplane" and tr.class_names[-1] == "truck"
    assert tr.class_counts() == [20] * 10 and te.class_counts() == [5] * 10
    assert tr.images.shape[1:] == (3, 32, 32) and tr.mean == tuple(cfg.mean)


# ------------------------------------------------------------------------------------------------ registry + schema


def test_a_registered_loader_is_a_dataset(tmp_path):
    """A new dataset is a loader registered by name (+ its YAML): load_dataset needs no other edit."""
    from dfdistill.data.image_folder import Split
    from dfdistill.data.registry import register_dataset, unregister_dataset

    @register_dataset("toy_registry_test")
    def load_toy(cfg, cache=None):
        x = torch.arange(6 * 4, dtype=torch.uint8).view(6, 1, 2, 2) * 10
        y = torch.tensor([0, 1, 0, 1, 0, 1])
        return Split(x, y, ["even", "odd"]), Split(x[:2], y[:2], ["even", "odd"])

    try:
        assert "toy_registry_test" in dataset_names()
        tr, te = load_dataset({"name": "toy_registry_test", "mean": [0.0], "std": [1.0]}, cache_dir=tmp_path)
        assert tr.class_counts() == [3, 3] and len(te) == 2
        assert torch.allclose(tr.images[:], torch.arange(24.0).view(6, 1, 2, 2) * 10 / 255)
        with pytest.raises(ValueError, match="registered twice"):
            register_dataset("toy_registry_test")(lambda cfg, cache=None: None)
    finally:
        unregister_dataset("toy_registry_test")
    with pytest.raises(ConfigError, match="unknown dataset 'toy_registry_test'"):
        load_dataset({"name": "toy_registry_test"})


@pytest.mark.parametrize("bad,match", [
    ({"storage": "gpu"}, "dataset.storage must be auto, device or host"),
    ({"decode_workers": 0}, "dataset.decode_workers must be positive"),
    ({"mean": [0.5]}, "both be set or both be null"),
    ({"mean": [0.5], "std": [0.0]}, "dataset.std must be positive"),
    ({"colour": 3}, "invalid dataset config at dataset.colour: Key 'colour' not in 'DatasetConfig'"),
])
def test_dataset_config_errors_are_one_line(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_dataset(digits_cfg(**bad))
    assert "\n" not in str(info.value)


def test_image_folder_root_left_missing_is_a_config_error():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.load(REPO / "conf" / "dataset" / "image_folder.yaml")
    with pytest.raises(ConfigError, match=r"dataset.root is not set for .image_folder.: set dataset.root="):
        load_dataset(cfg)
