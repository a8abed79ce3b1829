"""Compiled first-order paths (dfdistill.engine.compiled): fresh networks reuse one graph, the compiled
result equals the eager one, `auto` waits for its budget, BatchNorm training stays eager."""

from __future__ import annotations

import pytest
import torch

from dfdistill.engine import compiled
from dfdistill.core.errors import ConfigError
from dfdistill.models import build_model
from dfdistill.engine.training import train_epochs

H = 16


@pytest.fixture
def counter():
    """compile mode on with a backend that counts the graphs dynamo hands it (and runs them eagerly)."""
    from torch._dynamo.testing import CompileCounter

    compiled.reset()
    cnt = CompileCounter()
    old = compiled.configure("on", backend=cnt)
    yield cnt
    compiled.restore(old)
    compiled.reset()


def _net(seed: int, norm: str = "instancenorm") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("convnet", 3, 4, H, width=8, depth=2, norm=norm)


def _batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, H, H, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_fresh_networks_do_not_recompile(counter):
    x, y = _batch()
    for seed in range(4):  # DC/DM draw a fresh network every iteration
        net = _net(seed)
        compiled.ce_loss(net, x, y).backward()
        compiled.embed(net, x)
        with torch.no_grad():
            compiled.logits(net.eval(), x)
    # one graph per path: cross-entropy (train mode), embedding, logits (eval mode)
    assert counter.frame_count == 3


def test_compiled_values_and_gradients_equal_eager(counter):
    x, y = _batch()
    net = _net(1)
    loss = compiled.ce_loss(net, x, y)
    g = torch.autograd.grad(loss, list(net.parameters()))
    ref = torch.nn.functional.cross_entropy(net(x), y)
    g_ref = torch.autograd.grad(ref, list(net.parameters()))
    assert counter.frame_count == 1
    assert torch.allclose(loss, ref) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g, g_ref))
    xs = x.clone().requires_grad_(True)  # DM's synthetic side: the gradient reaches the images
    gx = torch.autograd.grad(compiled.embed(net, xs).square().sum(), xs)[0]
    xr = x.clone().requires_grad_(True)
    assert torch.allclose(gx, torch.autograd.grad(net.embed(xr).square().sum(), xr)[0], atol=1e-6)


def test_training_with_aot_autograd_equals_eager():
    """Forward and backward through AOTAutograd (the part that would reject double backward)."""
    x, y = _batch(20, 3)
    eager, comp = _net(2), _net(2)
    train_epochs(eager, x, y, 3, lr=0.05, momentum=0.9, batch_size=8, gen=torch.Generator().manual_seed(0))
    compiled.reset()
    old = compiled.configure("on", backend="aot_eager")
    try:
        train_epochs(comp, x, y, 3, lr=0.05, momentum=0.9, batch_size=8, gen=torch.Generator().manual_seed(0))
    finally:
        compiled.restore(old)
        compiled.reset()
    for a, b in zip(eager.parameters(), comp.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_auto_is_decided_by_the_device_never_by_the_clock(counter, monkeypatch):
    """auto: eager on CPU however much time a path has taken (the clock is patched to run very fast
    and very slow), compiled on CUDA -- a function of config and device alone."""
    import time as _time

    x, y = _batch()
    compiled.configure("auto")
    for fake in (lambda: 0.0, lambda: _time.perf_counter() * 1e6):
        monkeypatch.setattr(_time, "process_time", fake)
        monkeypatch.setattr(_time, "perf_counter", fake)
        for seed in range(3):
            compiled.ce_loss(_net(seed), x, y)
    assert counter.frame_count == 0
    assert not compiled.compiles_on("cpu") and compiled.compiles_on("cuda")
    compiled.configure("on")
    assert compiled.compiles_on("cpu")
    compiled.ce_loss(_net(0), x, y)
    assert counter.frame_count == 1


def test_batchnorm_in_training_runs_eagerly_and_off_means_eager(counter):
    x, y = _batch()
    bn = _net(0, "batchnorm")
    compiled.ce_loss(bn, x, y)  # running statistics are updated in place: not compiled
    assert counter.frame_count == 0
    with torch.no_grad():
        compiled.logits(bn.eval(), x)
    assert counter.frame_count == 1
    compiled.configure("off")
    compiled.ce_loss(_net(1), x, y)
    assert counter.frame_count == 1


def test_compile_setting_is_checked(compose_cfg):
    from dfdistill.config.resolve import resolve_config

    with pytest.raises(ConfigError, match="auto|on|off"):
        compiled.configure("sometimes")
    assert compiled.configure(False).mode in compiled.MODES  # booleans are on/off
    assert compiled.settings().mode == "off"
    compiled.configure("off")
    with pytest.raises(ConfigError, match="compile must be auto|on|off"):
        resolve_config(compose_cfg(["compile=sometimes"]))


@pytest.mark.slow
def test_inductor_training_step_equals_eager():
    """The real backend (C++ codegen with gcc) on one training step; minutes of compile on 2 cores."""
    x, y = _batch(20, 4)
    eager, comp = _net(5), _net(5)
    train_epochs(eager, x, y, 1, lr=0.05, batch_size=20, gen=torch.Generator().manual_seed(0))
    compiled.reset()
    old = compiled.configure("on", backend="inductor")
    try:
        train_epochs(comp, x, y, 1, lr=0.05, batch_size=20, gen=torch.Generator().manual_seed(0))
    finally:
        compiled.restore(old)
        compiled.reset()
    for a, b in zip(eager.parameters(), comp.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


# dsa runs DC's class with augmentation (~3.5 CPU-s): -m slow; dc keeps the inner-loop graph reuse covered
@pytest.mark.parametrize("method", ["dm", "dc", pytest.param("dsa", marks=pytest.mark.slow)])
def test_method_iterations_reuse_their_graphs(compose_cfg, tmp_path, method):
    """DM's embeddings, DC/DSA's real-side gradients and inner loop: a fresh network per iteration,
    the graphs of the first iteration serve every later one."""
    from torch._dynamo.testing import CompileCounter

    from dfdistill.bench.harness import build_setup, make_distiller

    setup = build_setup(compose_cfg(["profile=smoke", "dataset=digits", f"method={method}", "ipc=2",
                                     "method.outer_loop=2", "method.inner_loop=2"] if method != "dm" else
                                    ["profile=smoke", "dataset=digits", "method=dm", "ipc=2"]), tmp_path)
    d = make_distiller(setup, baseline=False)
    compiled.reset()
    cnt = CompileCounter()
    old = compiled.configure("on", backend=cnt)
    try:
        d.step(0)
        first = cnt.frame_count
        d.step(1)
        d.step(2)
    finally:
        compiled.restore(old)
        compiled.reset()
    assert first >= (1 if method == "dm" else 2) and cnt.frame_count == first
