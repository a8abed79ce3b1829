"""Gradient distances and per-class gradients against hand computations / autograd references."""

import torch
from torch import nn

from dfdistill.methods.matching import (
    batched_gradient_distance, class_gradients, class_gradients_loop, detached_params, gradient_distance,
    weighted_ce,
)


def test_ours_distance_matches_hand_computation():
    gr = {"w": torch.tensor([[1.0, 0.0], [0.0, 2.0]]), "b": torch.tensor([5.0, -3.0])}
    gs = {"w": torch.tensor([[1.0, 1.0], [0.0, -1.0]]), "b": torch.tensor([0.0, 0.0])}
    # row 0: cos = 1/(1*sqrt2); row 1: cos = -2/(2*1) = -1 ; biases ignored
    expected = (1 - 1 / (1 * 2**0.5 + 1e-6)) + (1 - (-2) / (2 * 1 + 1e-6))
    assert torch.isclose(gradient_distance(gr, gs, "ours"), torch.tensor(expected), atol=1e-6)


def test_ours_conv_reshape_per_output_channel():
    g1 = torch.randn(3, 2, 3, 3)
    g2 = torch.randn(3, 2, 3, 3)
    rows = [1 - (a.flatten() @ b.flatten()) / (a.norm() * b.norm() + 1e-6) for a, b in zip(g1, g2)]
    assert torch.isclose(gradient_distance({"c": g1}, {"c": g2}, "ours"), torch.stack(rows).sum(), atol=1e-5)


def test_mse_cos_and_idc_metrics():
    a = {"conv": torch.ones(2, 1, 1, 1), "fc": torch.ones(2, 2), "b": torch.ones(2)}
    b = {"conv": torch.zeros(2, 1, 1, 1), "fc": 2 * torch.ones(2, 2), "b": torch.zeros(2)}
    assert gradient_distance(a, b, "mse").item() == 2 + 4 + 2
    assert gradient_distance(a, b, "idc_mse").item() == 2  # conv only
    assert gradient_distance(a, b, "idc_l1").item() == 2
    assert abs(gradient_distance(a, a, "cos").item()) < 1e-6


def _tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_class_gradients_match_loop_and_batched_distance():
    net = _tiny_net()
    x = torch.randn(3, 5, 1, 6, 6)
    y = torch.arange(3).repeat_interleave(5).view(3, 5)
    g = class_gradients(net, detached_params(net), x, y)
    ref = class_gradients_loop(net, list(x), list(y))
    names = [n for n, _ in net.named_parameters()]
    for c in range(3):
        for n, r in zip(names, ref[c]):
            assert torch.allclose(g[n][c], r, atol=1e-5)
    xs = torch.randn(3, 2, 1, 6, 6)
    gs = class_gradients(net, detached_params(net), xs, y[:, :2])
    batched = batched_gradient_distance(g, gs, "ours")
    single = sum(gradient_distance({k: v[c] for k, v in g.items()}, {k: v[c] for k, v in gs.items()}) for c in range(3))
    assert torch.isclose(batched, single, atol=1e-5)


def test_weights_of_one_equal_unweighted_and_zero_weight_drops_sample():
    net = _tiny_net()
    x = torch.randn(2, 4, 1, 6, 6)
    y = torch.tensor([[0] * 4, [1] * 4])
    p = detached_params(net)
    g0 = class_gradients(net, p, x, y)
    g1 = class_gradients(net, p, x, y, torch.ones(2, 4))
    w = torch.ones(2, 4)
    w[:, 3] = 0
    g2 = class_gradients(net, p, x, y, w)
    g3 = class_gradients(net, p, x[:, :3], y[:, :3])
    for k in g0:
        assert torch.allclose(g0[k], g1[k], atol=1e-6)
        assert torch.allclose(g2[k], g3[k], atol=1e-5)


def test_synthetic_side_gradient_flows_to_images():
    net = _tiny_net()
    xs = torch.randn(2, 2, 1, 6, 6, requires_grad=True)
    y = torch.tensor([[0, 0], [1, 1]])
    xr = torch.randn(2, 4, 1, 6, 6)
    p = detached_params(net)
    gr = class_gradients(net, p, xr, y.repeat(1, 2))
    loss = batched_gradient_distance(gr, class_gradients(net, p, xs, y), "ours")
    loss.backward()
    assert xs.grad is not None and xs.grad.abs().sum() > 0


def test_weighted_ce_soft_labels_equal_hard_for_one_hot():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    assert torch.isclose(weighted_ce(logits, y, None), weighted_ce(logits, nn.functional.one_hot(y, 4).float(), None))
