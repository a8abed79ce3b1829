"""Class-chunked real-side passes give the unchunked results; the real batch is never built whole."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.data.augment import build_augment
from dfdistill.data.real import RealData
from dfdistill.engine.memory import (
    MemoryConfig, activation_bytes_per_row, class_ranges, classes_per_pass, memory_settings, rows_per_pass,
)
from dfdistill.methods.base import DistillContext
from dfdistill.methods.batchnorm import batch_statistics
from dfdistill.methods.chunks import ClassBatch, backward_in_chunks
from dfdistill.methods.dc import DCConfig, GradientMatching
from dfdistill.methods.dm import DM, DMConfig
from dfdistill.methods.matching import freeze_batchnorm_stats
from dfdistill.models import build_model
from dfdistill.pruning.ite import ITEConfig, ITESelector

C = 5


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def make_ctx(tmp_path: Path, backbone: str = "convnet", counts=(6, 4, 6, 5, 6), adaptive=False) -> DistillContext:
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.randn(len(labels), 3, 8, 8, generator=g)
    real = RealData(images, labels, C, [str(c) for c in range(C)], (0.5,) * 3, (0.5,) * 3)

    def factory(seed: int):
        torch.manual_seed(seed)
        return build_model(backbone, 3, C, 8, width=4, depth=2)

    sel = None
    if adaptive:
        sel = ITESelector(ITEConfig(beta=0.4, chunk=3), real)
        sel.begin_iteration(0)
    return DistillContext(real=real, ipc=2, model_factory=factory, augment=build_augment("dsa"),
                          device=torch.device("cpu"), seed=3, cache=ArtifactCache(tmp_path / "c"), out_dir=tmp_path,
                          adaptive=sel)


def dc_cfg(**kw) -> DCConfig:
    base = dict(name="dsa", _target_="x", dsa=True, init="real", batch_real=5, outer_loop=2, inner_loop=1)
    return DCConfig(**{**base, **kw})


def run_step(cls, mcfg, ctx, class_chunk):
    """One step unchunked (class_chunk None, a huge budget) or with `class_chunk` classes and one row
    per row-level pass (a budget of ~1 KB: e.g. DC's BN statistics pass goes row by row)."""
    with memory_settings(class_chunk=class_chunk, cpu_budget_mb=1e6 if class_chunk is None else 1e-3):
        d = cls(mcfg, ctx)
        d.init_state()
        out = d.step(0)
    return d, out


def assert_same_update(cls, mcfg, make, chunks=(1, 2)):
    ref, ref_out = run_step(cls, mcfg, make(), None)
    for k in chunks:
        d, out = run_step(cls, mcfg, make(), k)
        assert torch.allclose(d.images, ref.images, rtol=1e-10, atol=1e-12), f"class_chunk={k}"
        assert torch.allclose(out["loss"], ref_out["loss"], rtol=1e-10, atol=1e-12)
        assert torch.equal(d.gen.get_state(), ref.gen.get_state())


def test_dm_chunked_equals_one_pass(tmp_path):
    assert_same_update(DM, DMConfig(name="dm", _target_="x", batch_real=5), lambda: make_ctx(tmp_path))


def test_dm_batchnorm_chunked_keeps_the_one_batch_statistics(tmp_path):
    """DM's BN branch: the real side in chunks normalises with the statistics of all classes at once."""
    assert_same_update(DM, DMConfig(name="dm", _target_="x", batch_real=5),
                       lambda: make_ctx(tmp_path, backbone="convnet_bn"))


@pytest.mark.parametrize("vmapped", [True, False])
def test_dc_chunked_equals_one_pass(tmp_path, vmapped):
    mcfg = dc_cfg(fast=vmapped, vmap_on_cpu=vmapped)
    assert_same_update(GradientMatching, mcfg, lambda: make_ctx(tmp_path))


def test_dc_batchnorm_chunked(tmp_path):
    """BN nets: the chunked statistics pass gives the running statistics of the one-pass version."""
    assert_same_update(GradientMatching, dc_cfg(), lambda: make_ctx(tmp_path, backbone="convnet_bn"))


@pytest.mark.parametrize("method", ["dc", "dm"])
def test_ite_chunked_equals_one_pass(tmp_path, method):
    """BiLP's ITE selector sees the lazily built real batch: same weights, same update, same row state."""
    cls, mcfg = (GradientMatching, dc_cfg(fast=True, vmap_on_cpu=True)) if method == "dc" else \
        (DM, DMConfig(name="dm", _target_="x", batch_real=5))
    ref, _ = run_step(cls, mcfg, make_ctx(tmp_path, adaptive=True), None)
    d, _ = run_step(cls, mcfg, make_ctx(tmp_path, adaptive=True), 2)
    assert torch.allclose(d.images, ref.images, rtol=1e-10, atol=1e-12)
    assert torch.equal(d.ctx.adaptive.row_keep, ref.ctx.adaptive.row_keep)
    assert not bool(ref.ctx.adaptive.row_keep.all())  # the selector did prune something


def test_real_batch_is_gathered_per_chunk(tmp_path, monkeypatch):
    """What bounds the memory: no call gathers more than one chunk of classes' rows."""
    sizes = []
    orig = RealData.batch

    def spy(self, idx):
        sizes.append(torch.as_tensor(idx).numel() if not isinstance(idx, slice) else len(self))
        return orig(self, idx)

    monkeypatch.setattr(RealData, "batch", spy)
    for cls, mcfg in ((DM, DMConfig(name="dm", _target_="x", batch_real=5)), (GradientMatching, dc_cfg())):
        ctx = make_ctx(tmp_path)
        with memory_settings(class_chunk=2):
            d = cls(mcfg, ctx)
            d.init_state()
            sizes.clear()
            d.step(0)
        assert sizes and max(sizes) <= 2 * 5, (cls.__name__, sizes)


def test_batch_statistics_equal_one_train_pass():
    torch.manual_seed(0)
    net = build_model("convnet_bn", 3, C, 8, width=4, depth=2)
    x = torch.randn(13, 3, 8, 8)
    stats = batch_statistics(net, lambda: iter(x.split(4)))
    captured = {}
    hooks = [m.register_forward_pre_hook(lambda m, i: captured.__setitem__(m, i[0].detach()))
             for m in stats]
    net.train()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for bn, (mean, var, n) in stats.items():
        inp = captured[bn]
        assert n == inp.numel() // inp.shape[1]
        assert torch.allclose(mean, inp.mean((0, 2, 3)), atol=1e-12)
        assert torch.allclose(var, inp.var((0, 2, 3), unbiased=False), atol=1e-12)


def test_freeze_batchnorm_in_chunks_equals_one_pass():
    torch.manual_seed(0)
    a = build_model("convnet_bn", 3, C, 8, width=4, depth=2)
    b = build_model("convnet_bn", 3, C, 8, width=4, depth=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(11, 3, 8, 8)
    freeze_batchnorm_stats(a, x)
    freeze_batchnorm_stats(b, lambda: iter(x.split(3)))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va.double(), vb.double(), atol=1e-12), k
    assert not any(m.training for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_backward_in_chunks_cuts_shared_history_once():
    """A whole tensor with shared history: chunks accumulate into a leaf, one backward through the rest."""
    p = torch.randn(6, 3, requires_grad=True)
    shared = (p * 2).exp()  # history shared by all classes
    total = backward_in_chunks(lambda lo, hi, s: (s ** 2).sum() * (lo + 1), 6, 4, [shared])
    ref_p = p.detach().clone().requires_grad_(True)
    s = (ref_p * 2).exp()
    ref = (s[:4] ** 2).sum() + (s[4:] ** 2).sum() * 5
    ref.backward()
    assert torch.allclose(total, ref.detach()) and torch.allclose(p.grad, ref_p.grad)


def test_class_batch_builds_each_chunk_once():
    calls = []

    def build(lo, hi):
        calls.append((lo, hi))
        return torch.arange(lo, hi, dtype=torch.float64)[:, None].expand(hi - lo, 2)

    xb = ClassBatch(build, (5, 2), torch.device("cpu"), chunk=2)
    assert [float(xb[p][0]) for p in range(5)] == [0, 1, 2, 3, 4]
    assert calls == [(0, 2), (2, 4), (4, 5)]
    assert torch.equal(xb[4:5], build(4, 5)) and calls[-1] == (4, 5) and len(calls) == 4  # cached range, no rebuild
    assert torch.equal(xb.materialize()[:, 0], torch.arange(5, dtype=torch.float64))


def test_chunk_sizes_follow_config_and_budget():
    torch.manual_seed(0)
    net = build_model("convnet", 3, C, 8, width=4, depth=2)
    act = activation_bytes_per_row(net, (3, 8, 8))
    # ConvNet width 4, 8 px: conv, norm, relu (4x8x8 each), pool (4x4x4), ... > 3 * 256 floats per row
    assert act >= 3 * 4 * 8 * 8 * 8
    with memory_settings(class_chunk=2):
        assert classes_per_pass(net, (3, 8, 8), 64, C) == 2
    per_class = 64 * 3.0 * act
    with memory_settings(cpu_budget_mb=2.5 * per_class / 2**20):
        assert classes_per_pass(net, (3, 8, 8), 64, C) == 2
    with memory_settings(cpu_budget_mb=1e-6):
        assert classes_per_pass(net, (3, 8, 8), 64, C) == 1 and rows_per_pass(net, (3, 8, 8)) == 1
    assert class_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]


@pytest.mark.parametrize("bad", [dict(class_chunk=0), dict(device_memory_fraction=0.0), dict(cpu_budget_mb=-1)])
def test_memory_config_rejects_bad_values(bad):
    from dfdistill.core.errors import ConfigError

    with pytest.raises(ConfigError, match="memory."):
        MemoryConfig(**bad)


def test_dm_step_resumes_exactly_with_the_device_generator(tmp_path):
    """The sampling generator is part of the distiller's state: restoring it reproduces the next draw."""
    mcfg = DMConfig(name="dm", _target_="x", batch_real=3)
    a = DM(mcfg, make_ctx(tmp_path))
    a.init_state()
    a.step(0)
    st = copy.deepcopy(a.state_dict())  # on a CPU the state shares storage with the live tensors
    a.step(1)
    b = DM(mcfg, make_ctx(tmp_path))
    b.init_state()
    b.load_state_dict(st)
    b.step(1)
    assert torch.allclose(a.images, b.images, rtol=0, atol=0)
