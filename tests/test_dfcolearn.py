"""DF-CoLearn: eq. 5 with m = 1 is plain GM; the eq. 7 mask gradient matches finite differences."""

import pytest
import torch

from dfdistill.methods.dfcolearn import infonce_mi, soft_truncation
from dfdistill.methods.matching import batched_gradient_distance, class_gradients, detached_params
from dfdistill.models import build_model


def _setup():
    torch.manual_seed(0)
    net = build_model("convnet", 1, 2, 8, width=4, depth=1)
    xr, yr = torch.randn(2, 5, 1, 8, 8), torch.arange(2).repeat_interleave(5).view(2, 5)
    xs, ys = torch.randn(2, 1, 1, 8, 8), torch.arange(2).view(2, 1)
    return net, xr, yr, xs, ys


@pytest.mark.parametrize("metric", ["ours", "mse"])
def test_weighted_gm_with_unit_mask_is_plain_gm(metric):
    net, xr, yr, xs, ys = _setup()
    p = detached_params(net)
    gs = class_gradients(net, p, xs, ys)
    plain = batched_gradient_distance(class_gradients(net, p, xr, yr), gs, metric)
    masked = batched_gradient_distance(class_gradients(net, p, xr, yr, torch.ones(2, 5)), gs, metric)
    assert torch.allclose(plain, masked, rtol=1e-5, atol=1e-6)


def test_mask_gradient_matches_finite_differences():
    from dfdistill.methods.dfcolearn import DFCoLearn, DFCoLearnConfig

    net, xr, yr, xs, ys = _setup()
    net = net.double(); xr, xs = xr.double(), xs.double()
    obj = DFCoLearn.__new__(DFCoLearn)
    obj.cfg = DFCoLearnConfig(name="dfcolearn", _target_="x", dis_metric="mse", lr_img=0.5, unroll_lr=0.5,
                              l1_weight=0.01, mi_weight=0.1)
    params = {k: v.detach().requires_grad_(True) for k, v in net.named_parameters()}
    idx = torch.arange(10).view(2, 5)
    xv, yv = xr.reshape(10, 1, 8, 8), yr.reshape(-1)
    phi = torch.rand(2, 5, dtype=torch.double) * 0.5 + 0.5

    def f(mask):
        s = xs.clone().requires_grad_(True)
        return obj.mask_objective(mask, net, params, xr, yr, idx, None, phi, s, ys, xv, yv)

    m = torch.rand(10, dtype=torch.double) * 0.5 + 0.5
    mr = m.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(mr), mr)
    eps = 1e-6
    for i in (0, 3, 7):
        e = torch.zeros(10, dtype=torch.double); e[i] = eps
        fd = (f(m + e) - f(m - e)).detach() / (2 * eps)
        assert torch.allclose(g[i], fd, rtol=1e-4, atol=1e-8), (i, g[i], fd)


def test_truncation_and_infonce():
    k = torch.tensor([[0.1, 0.2, 0.3, 5.0]])
    phi = soft_truncation(k, 0.75, 0.25)
    assert phi[0, 3] < phi[0, 0] and ((phi > 0) & (phi < 1)).all()
    e = torch.eye(4)
    assert infonce_mi(e, e, 0.1) > infonce_mi(e, e.roll(1, 0), 0.1)


def test_mask_update_rules():
    """sgd = eq. 7 literally on the batch rows; normalized moves them by lr in RMS; both clip to [0, 1]."""
    from dfdistill.methods.dfcolearn import update_mask

    grad = torch.tensor([1e-5, -2e-5, 3e-5, 0.0, 4e-5, 7.0])  # row 5 is not in the batch
    rows = torch.tensor([0, 1, 2, 4])
    m = torch.full((6,), 0.5)
    update_mask(m, grad, rows, 2.0, "sgd")
    assert torch.allclose(m, torch.tensor([0.5 - 2e-5, 0.5 + 4e-5, 0.5 - 6e-5, 0.5, 0.5 - 8e-5, 0.5]))
    m = torch.full((6,), 0.5)
    update_mask(m, grad, rows, 0.1, "normalized")
    delta = (m - 0.5)[rows]
    assert torch.allclose(delta.pow(2).mean().sqrt(), torch.tensor(0.1), rtol=1e-5)
    assert (torch.sign(delta) == -torch.sign(grad[rows])).all() and m[3] == 0.5 and m[5] == 0.5
    m = torch.ones(6)
    update_mask(m, -grad, rows, 10.0, "normalized")
    assert m.max() == 1.0 and m.min() >= 0.0
    # gamma (the L1 term's constant gradient) is not rescaled: a pure-L1 gradient moves rows by lr*gamma
    m = torch.full((6,), 0.5)
    update_mask(m, torch.full((6,), 1e-4), rows, 0.1, "normalized", gamma=1e-4)
    assert torch.allclose(m[rows], torch.full((4,), 0.5 - 1e-5))
