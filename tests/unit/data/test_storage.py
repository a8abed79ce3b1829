"""uint8 split storage: batches equal the old float32 split, the view keeps method code working,
storage placement is decided from free memory, pruning frees the unpruned split."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from dfdistill.data.datasets import load_dataset, pixel_stats
from dfdistill.data.real import RealData
from dfdistill.data.storage import DEVICE_SHARE, choose_storage
from dfdistill.data.zca import ZCA
from dfdistill.core.errors import DataError

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def pixels(n_per=(7, 5, 8), size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((k,), c) for c, k in enumerate(n_per)])
    u8 = torch.randint(0, 256, (len(labels), 3, size, size), generator=g, dtype=torch.uint8)
    return u8, labels


def old_float_split(u8: torch.Tensor) -> torch.Tensor:
    """What the pre-uint8 loader stored: copy to float32, /255, then (x - mean) / std in place."""
    out = torch.empty(u8.shape, dtype=torch.float32)
    out.copy_(u8)
    out.div_(255.0)
    m = torch.tensor(MEAN).view(1, -1, 1, 1)
    s = torch.tensor(STD).view(1, -1, 1, 1)
    return out.sub_(m).div_(s)


def pair():
    u8, y = pixels()
    new = RealData(u8, y, 3, ["a", "b", "c"], MEAN, STD, pixels=True)
    old = RealData(old_float_split(u8), y, 3, ["a", "b", "c"], MEAN, STD)
    return new, old


# ------------------------------------------------------------------------------------------------ equality


def test_uint8_batches_are_bit_identical_to_the_float32_split():
    new, old = pair()
    assert new._store.dtype == torch.uint8 and new.nbytes * 4 == old.nbytes
    assert torch.equal(new.images[:], old.images[:])
    idx = torch.tensor([19, 0, 4, 4, 11])
    assert torch.equal(new.images[idx], old.images[idx])
    assert torch.equal(new.images.index_select(0, idx), old.images.index_select(0, idx))
    assert torch.equal(new.batch(idx), old.batch(idx))
    assert torch.equal(new.images[3], old.images[3]) and torch.equal(new.images[-1], old.images[-1])
    assert torch.equal(new.images[2:9], old.images[2:9])
    mask = new.labels == 1
    assert torch.equal(new.images[mask], old.images[mask])
    two_d = torch.tensor([[1, 2], [3, 4], [5, 6]])
    assert new.images[two_d].shape == (3, 2, 3, 8, 8) and torch.equal(new.images[two_d], old.images[two_d])
    assert torch.equal(new.images[idx, 1], old.images[idx, 1])
    assert torch.equal(new.images[:, 0, 0, 0], old.images[:, 0, 0, 0])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(new.sample_class(2, 4, g1), old.sample_class(2, 4, g2))
    a, b = new.sample_per_class(3, generator=g1), old.sample_per_class(3, generator=g2)
    assert all(torch.equal(x, z) for x, z in zip(a, b))
    px = new.denormalize(new.images[:])
    assert torch.allclose(px, new._store.float() / 255, atol=1e-6)  # IDC/EDD's pixel round trip still works
    assert torch.allclose(new.normalize_pixels(px), new.images[:], atol=1e-5)


def test_float_pixel_store_is_never_modified_by_a_batch():
    u8, y = pixels()
    px = u8.float() / 255
    before = px.clone()
    real = RealData(px, y, 3, ["a", "b", "c"], MEAN, STD, pixels=True)
    x = real.images[0:5]  # a slice of the store is a view: normalising must not write through it
    assert torch.equal(px, before)
    assert torch.allclose(x, old_float_split(u8)[0:5], atol=1e-6)


def test_view_reports_shape_dtype_device_and_rejects_bad_rows():
    new, _ = pair()
    v = new.images
    assert v.shape == (20, 3, 8, 8) and len(v) == 20 and v.size(0) == 20 and v.size() == v.shape
    assert v.dim() == 4 and v.ndim == 4 and v.numel() == 20 * 3 * 64
    assert v.dtype == torch.float32 and v.device == torch.device("cpu")
    assert new.channels == 3 and new.image_size == 8
    with pytest.raises(IndexError):
        v[20]
    with pytest.raises(IndexError):
        v[torch.ones(5, dtype=torch.bool)]
    with pytest.raises(ValueError):
        v.index_select(1, torch.tensor([0]))


def test_subset_gathers_the_uint8_store_and_composes_source_rows():
    new, old = pair()
    rows = torch.tensor([2, 9, 15, 16])
    sub, ref = new.subset(rows), old.subset(rows)
    assert sub._store.dtype == torch.uint8 and sub.nbytes == 4 * 3 * 64
    assert torch.equal(sub.images[:], ref.images[:]) and torch.equal(sub.source_index, rows)
    sub2 = sub.subset(torch.tensor([3, 0]))
    assert torch.equal(sub2.source_index, torch.tensor([16, 2]))
    assert sub2.class_counts() == [1, 0, 1]


# ------------------------------------------------------------------------------------------------ methods


def _setup(tmp_path, real, cls, mcfg):
    """test_bench's tiny DC/DM problem with `real` as its split."""
    import dataclasses

    from test_bench import tiny_setup

    setup = tiny_setup(tmp_path, cls, mcfg, dtype=torch.float32)
    return dataclasses.replace(setup, ctx=dataclasses.replace(setup.ctx, real=real))


@pytest.mark.parametrize("method", ["dm", "dc"])
def test_dm_and_dc_step_gradient_same_as_float32_storage(tmp_path, method):
    from dfdistill.bench.harness import first_image_gradient
    from dfdistill.methods.dc import DCConfig, GradientMatching
    from dfdistill.methods.dm import DM, DMConfig

    if method == "dm":
        cls, mcfg = DM, DMConfig(name="dm", _target_="x", batch_real=5)
    else:
        cls, mcfg = GradientMatching, DCConfig(name="dsa", _target_="x", dsa=True, init="real", batch_real=5,
                                               outer_loop=2, inner_loop=2)
    new, old = pair()
    g_new = first_image_gradient(_setup(tmp_path, new, cls, mcfg), baseline=False)
    g_old = first_image_gradient(_setup(tmp_path, old, cls, mcfg), baseline=False)
    assert g_new.abs().max() > 0
    assert torch.allclose(g_new, g_old, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------ loading


def test_loaded_split_is_stored_as_uint8_with_float32_batches(tmp_path):
    from test_datasets import folder_cfg, make_folder

    root = make_folder(tmp_path / "data")
    tr, te = load_dataset(folder_cfg(root, mean=list(MEAN), std=list(STD)), cache_dir=tmp_path / "c")
    assert tr._store.dtype == torch.uint8 and tr.nbytes == len(tr) * 3 * 8 * 8
    assert tr.images.dtype == torch.float32 and tr.images[:].dtype == torch.float32
    assert torch.equal(tr.images[:], old_float_split(tr._store))


def test_pixel_stats_match_std_mean_without_a_float64_split():
    u8, _ = pixels(n_per=(300, 200, 100), size=16)
    mean, std = pixel_stats(u8)
    s, m = torch.std_mean(u8.double() / 255, dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), m, atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), s, atol=1e-12)


def test_zca_fit_from_the_uint8_view_matches_the_dense_fit():
    u8, y = pixels(n_per=(30, 30, 30), size=4)
    real = RealData(u8, y, 3, ["a", "b", "c"], (0.0,) * 3, (1.0,) * 3, pixels=True)
    dense = u8.float() / 255
    chunked = ZCA(chunk_size=16).fit(real.images, eps=0.1)
    ref = ZCA(chunk_size=4096).fit(dense, eps=0.1)
    assert torch.allclose(chunked.W, ref.W, atol=1e-5) and torch.allclose(chunked.mean, ref.mean, atol=1e-7)
    real.zca = chunked
    assert torch.allclose(real.images[5:9], ref.transform(dense[5:9]), atol=1e-5)  # whitened per batch


# ------------------------------------------------------------------------------------------------ placement


GiB = 2**30


def test_storage_auto_device_host_decisions():
    cuda = torch.device("cuda", 0)
    dev, line = choose_storage("auto", cuda, 10 * GiB, free=80 * GiB)
    assert dev == cuda and "storage=auto" in line and "\n" not in line
    dev, line = choose_storage("auto", cuda, int(DEVICE_SHARE * 80 * GiB) + 1, free=80 * GiB)
    assert dev == torch.device("cpu") and "pinned host memory" in line
    assert choose_storage("host", cuda, 1, free=80 * GiB)[0] == torch.device("cpu")
    assert choose_storage("device", cuda, 70 * GiB, free=80 * GiB)[0] == cuda
    with pytest.raises(DataError, match="storage=host"):
        choose_storage("device", cuda, 90 * GiB, free=80 * GiB)
    for mode in ("auto", "device", "host"):
        dev, line = choose_storage(mode, torch.device("cpu"), 100)
        assert dev == torch.device("cpu") and "host memory" in line
    with pytest.raises(DataError, match="auto, device, host"):
        choose_storage("gpu", cuda, 1, free=1)


def test_storage_line_is_printed_once_per_load(tmp_path, capsys):
    load_dataset({"name": "digits", "channels": 1, "storage": "host"}, cache_dir=tmp_path)
    out = capsys.readouterr().out
    assert out.count("dataset storage:") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (pinned staging + async copy)")
def test_host_storage_batches_equal_device_storage_on_cuda():
    u8, y = pixels()
    on_dev = RealData(u8.cuda(), y.cuda(), 3, ["a", "b", "c"], MEAN, STD, pixels=True, device="cuda")
    on_host = RealData(u8, y.cuda(), 3, ["a", "b", "c"], MEAN, STD, pixels=True, device="cuda")
    assert on_host.storage_device.type == "cpu" and on_host.images.device.type == "cuda"
    idx = torch.tensor([3, 1, 17], device="cuda")
    assert torch.equal(on_dev.images[idx], on_host.images[idx])
    assert torch.equal(on_dev.images[:], on_host.images[:])
    moved = on_host.to("cuda")
    assert moved.storage_device.type == "cpu"


# ------------------------------------------------------------------------------------------------ pruning


def test_pruning_replaces_the_split_and_the_factory_does_not_keep_it():
    from omegaconf import OmegaConf

    from dfdistill.models.factory import make_model_factory

    u8, y = pixels()
    train = RealData(u8, y, 3, ["a", "b", "c"], MEAN, STD, pixels=True)
    del u8
    factory = make_model_factory(OmegaConf.create({"name": "convnet", "width": 4, "depth": 2}), train, torch.device("cpu"))
    unpruned = weakref.ref(train._store)
    train = train.subset(torch.tensor([0, 7, 12]))  # what pruning does; the old object is dropped
    gc.collect()
    assert unpruned() is None, "the unpruned split is still referenced (model factory?)"
    assert factory(0)(train.images[:2]).shape == (2, 3)
