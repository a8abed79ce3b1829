"""Trajectory matching: TESLA's exact gradient, expert caching, smoke pipelines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dfdistill.data.augment import build_augment
from dfdistill.methods import experts as experts_mod
from dfdistill.methods.experts import functional_net
from dfdistill.methods.mtt import make_plan, unrolled_loss
from dfdistill.methods.tesla import tesla_gradients


def _tiny_problem(steps: int = 4, augment: bool = True):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 6, 3)).double()
    f = functional_net(net)
    p = sum(q.numel() for q in net.parameters())
    theta0 = torch.randn(p, dtype=torch.float64) * 0.3
    theta_star = theta0 + torch.randn(p, dtype=torch.float64) * 0.1
    images = torch.randn(9, 2, 6, 6, dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(3)
    aug = build_augment("dsa", "color_crop_scale") if augment else None
    plan = make_plan(9, 4, steps, torch.Generator().manual_seed(1), augment)
    return f, theta0, theta_star, images, labels, plan, aug


@pytest.mark.parametrize("augment", [False, True])
def test_tesla_exact_gradient_equals_unrolled_autograd(augment):
    f, theta0, theta_star, images, labels, plan, aug = _tiny_problem(augment=augment)
    lr = 0.5
    x = images.clone().requires_grad_(True)
    a = torch.tensor(lr, dtype=torch.float64, requires_grad=True)
    loss = unrolled_loss(f, x, labels, plan, theta0, theta_star, a, aug)
    g_img, g_lr = torch.autograd.grad(loss, [x, a])
    t_loss, t_img, t_lr = tesla_gradients(f, images, labels, plan, theta0, theta_star, lr, aug, exact=True)
    assert torch.allclose(t_loss, loss.detach(), atol=1e-10)
    assert g_img.abs().max() > 1e-6
    torch.testing.assert_close(t_img, g_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t_lr, g_lr, atol=1e-5, rtol=1e-5)
    # the reference approximation (no Hessian terms) is a different gradient
    _, a_img, _ = tesla_gradients(f, images, labels, plan, theta0, theta_star, lr, aug, exact=False)
    assert (a_img - g_img).abs().max() > 1e-4


@pytest.mark.parametrize("augment", [False, True])
def test_tesla_approximation_is_the_reference_formula(augment):
    """exact=false is TESLA distill.py's gradient, written here from its formula (methods.md §7):
    forward without graph, G = sum_k g_k; dL/dX_i = 2 d/dX_i[(a (theta* - theta_0) + a^2 G) . g_i] / D
    with theta_i held fixed (no dependence on earlier batches); the lr gradient differentiates
    L(a) = ||theta_0 - a G - theta*||^2 / D with G held constant."""
    f, theta0, theta_star, images, labels, plan, aug = _tiny_problem(augment=augment)
    lr = 0.5
    D = ((theta0 - theta_star) ** 2).sum()
    thetas, theta, G = [], theta0, torch.zeros_like(theta0)
    for idx, seed in plan:
        x = images[idx] if seed is None else aug(images[idx], seed=seed)
        th = theta.clone().requires_grad_(True)
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(f(th, x), labels[idx]), th)[0]
        thetas.append(theta)
        G = G + g
        theta = theta - lr * g
    coeff = lr * (theta_star - theta0) + lr ** 2 * G  # the reference's constant vector
    ref_img = torch.zeros_like(images)
    for (idx, seed), th in zip(plan, thetas):
        sub = images[idx].clone().requires_grad_(True)
        x = sub if seed is None else aug(sub, seed=seed)
        th = th.clone().requires_grad_(True)
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(f(th, x), labels[idx]), th, create_graph=True)[0]
        ref_img.index_add_(0, idx, torch.autograd.grad(2 * (coeff * g).sum() / D, sub)[0])
    a = torch.tensor(lr, dtype=torch.float64, requires_grad=True)
    ref_lr = torch.autograd.grad(((theta0 - a * G - theta_star) ** 2).sum() / D, a)[0]
    loss, t_img, t_lr = tesla_gradients(f, images, labels, plan, theta0, theta_star, lr, aug, exact=False)
    torch.testing.assert_close(loss, ((theta - theta_star) ** 2).sum() / D)
    torch.testing.assert_close(t_img, ref_img, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(t_lr, ref_lr, atol=1e-9, rtol=1e-7)


def test_single_step_exact_and_approximate_agree():
    """With one student step there is no earlier batch, so both modes are the exact gradient."""
    f, theta0, theta_star, images, labels, plan, aug = _tiny_problem(steps=1, augment=False)
    _, e, _ = tesla_gradients(f, images, labels, plan, theta0, theta_star, 0.5, aug, exact=True)
    _, a, _ = tesla_gradients(f, images, labels, plan, theta0, theta_star, 0.5, aug, exact=False)
    torch.testing.assert_close(e, a)


def _count_trained(monkeypatch) -> list[int]:
    trained: list[int] = []
    real = experts_mod.train_experts

    def counting(ctx, settings, indices):
        trained.extend(indices)
        return real(ctx, settings, indices)

    monkeypatch.setattr(experts_mod, "train_experts", counting)
    return trained


def _stage_experts(compose_cfg, tmp_path, name, extra=()):
    from dfdistill.run.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=mtt", "stage=experts", *extra], tmp_path / name)
    return run(cfg)


def test_trajectory_cache_reused_and_keyed_by_kept_subset(compose_cfg, tmp_path, monkeypatch):
    trained = _count_trained(monkeypatch)
    _stage_experts(compose_cfg, tmp_path, "a")
    assert trained == [0, 1]  # smoke profile: 2 experts
    trained.clear()
    _stage_experts(compose_cfg, tmp_path, "b")  # another run dir, same settings
    assert trained == []
    _stage_experts(compose_cfg, tmp_path, "c", ["dataset.max_train_per_class=15"])  # other kept rows
    assert trained == [0, 1]
    trained.clear()
    _stage_experts(compose_cfg, tmp_path, "d", ["method.expert_lr=0.02"])  # other expert setting
    assert trained == [0, 1]


def test_killed_expert_run_resumes_at_its_expert(compose_cfg, tmp_path, monkeypatch):
    real = experts_mod.train_experts
    calls: list[int] = []

    def dies_on_second(ctx, settings, indices):
        calls.extend(indices)
        if 1 in indices:
            raise KeyboardInterrupt
        return real(ctx, settings, indices)

    monkeypatch.setattr(experts_mod, "train_experts", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        _stage_experts(compose_cfg, tmp_path, "k1", ["method.expert_lr=0.03"])
    monkeypatch.setattr(experts_mod, "train_experts", real)
    trained = _count_trained(monkeypatch)
    _stage_experts(compose_cfg, tmp_path, "k2", ["method.expert_lr=0.03"])
    assert calls == [0, 1] and trained == [1]


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [
    ("mtt", []),
    ("tesla", []),
    ("tesla", ["method.soft_label=true", "method.exact=false"]),
])
def test_smoke_pipeline_trajectory_methods(compose_cfg, tmp_path, method, extra):
    from dfdistill.run.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", f"method={method}", "ipc=1", "method.syn_steps=3",
                       "method.max_start_epoch=2", "method.expert_epochs=1", *extra])
    rec = run(cfg)
    assert rec["acc_mean"] >= 0 and rec["eval_lr"] > 0
    assert (tmp_path / "run" / "synthetic.pt").exists()


@pytest.mark.parametrize("value, expected", [(0.02, 0.02), (0.0, None), (-0.003, None), (float("nan"), None)])
def test_learned_lr_falls_back_when_not_positive(value, expected):
    """A learned lr that went <= 0 (or NaN) must not reach evaluation: None -> method.eval_lr."""
    from dfdistill.methods.mtt import TrajectoryMatching

    d = object.__new__(TrajectoryMatching)
    d.syn_lr = torch.tensor(value)
    got = d.eval_lr()
    assert got == (pytest.approx(expected) if expected is not None else None)
