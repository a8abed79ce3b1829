"""BiLP ITE: Taylor vs exact leave-one-out ranking, running-stat quantile band, selector shape."""

import torch

from dfdistill.methods.matching import detached_params
from dfdistill.models import build_model
from dfdistill.pruning.ite import (ITEConfig, ITESelector, RunningNormalBand, dm_meta_loss, gm_meta_loss,
                                   ite_vectors, per_sample_param_grads)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def _tiny(seed=0):
    torch.manual_seed(seed)
    net = build_model("convnet", 1, 3, 16, width=8, depth=2)
    xr, yr = torch.randn(20, 1, 16, 16), torch.zeros(20, dtype=torch.long)
    xs, ys = torch.randn(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)
    return net, detached_params(net), xr, yr, xs, ys


def test_taylor_matches_exact_loo_ranking_gm():
    net, params, xr, yr, xs, ys = _tiny()
    g = per_sample_param_grads(net, params, xr, yr)
    w = torch.ones(20)
    for metric in ("ours", "mse"):
        ml = gm_meta_loss(net, params, ys, metric)
        exact = ite_vectors(g, w, ml, xs, "exact").norm(dim=1)
        taylor = ite_vectors(g, w, ml, xs, "taylor").norm(dim=1)
        assert spearman(exact, taylor) >= 0.9, metric


def test_exact_loo_equals_two_meta_gradients():
    """Eq. 6 literally: gradient with the sample minus gradient without it (sample 3)."""
    net, params, xr, yr, xs, ys = _tiny(1)
    g = per_sample_param_grads(net, params, xr, yr)
    ml = gm_meta_loss(net, params, ys, "ours")
    ite = ite_vectors(g, torch.ones(20), ml, xs, "exact")
    from dfdistill.methods.matching import class_gradients, gradient_distance

    def syn_grad(keep):
        s = xs.clone().requires_grad_(True)
        gr = {k: v[0].detach() for k, v in class_gradients(net, params, xr[keep][None], yr[keep][None]).items()}
        gs = {k: v[0] for k, v in class_gradients(net, params, s[None], ys[None]).items()}
        return torch.autograd.grad(gradient_distance(gr, gs, "ours"), s)[0]

    keep = torch.ones(20, dtype=torch.bool)
    keep3 = keep.clone(); keep3[3] = False
    ref = (syn_grad(keep) - syn_grad(keep3)).reshape(-1)
    assert torch.allclose(ite[3], ref, atol=1e-5, rtol=1e-3)


def test_taylor_ranking_dm():
    net, params, xr, yr, xs, ys = _tiny(2)
    with torch.no_grad():
        g = {"e": net.embed(xr)}
    ml = dm_meta_loss(net)
    exact = ite_vectors(g, torch.ones(20), ml, xs, "exact").norm(dim=1)
    taylor = ite_vectors(g, torch.ones(20), ml, xs, "taylor").norm(dim=1)
    assert spearman(exact, taylor) >= 0.99


def test_running_band_keeps_one_minus_beta():
    torch.manual_seed(0)
    for tail in ("both", "small", "large"):
        band = RunningNormalBand(beta=0.2, eta=0.1, tail=tail)
        kept = total = 0
        for i in range(300):
            v = 3.0 + 0.5 * torch.randn(256)
            band.update(v)
            if i >= 50:
                kept += int(band.keep(v).sum()); total += v.numel()
        assert abs(kept / total - 0.8) < 0.02, (tail, kept / total)
    assert abs(band.mean - 3.0) < 0.1 and abs(band.var - 0.25) < 0.05


def test_selector_weights_and_lazy_reuse():
    net, params, xr, yr, xs, ys = _tiny(3)
    sel = ITESelector(ITEConfig(beta=0.3, lazy_every=2, chunk=8), num_rows=40, device=torch.device("cpu"))

    class D:  # distiller stand-in: only cfg.dis_metric is read
        class cfg:
            dis_metric = "ours"

    idx = torch.arange(20).view(1, 20)
    w1 = sel.weights(D, net, params, xr[None], yr[None], idx, None, xs[None], ys[None])
    assert w1.shape == (1, 20) and set(w1.unique().tolist()) <= {0.0, 1.0} and 0 < w1.sum() < 20
    w2 = sel.weights(D, net, params, xr[None] * 0, yr[None], idx, None, xs[None], ys[None])  # lazy: cached rows
    assert torch.equal(w1, w2)
    st = sel.state_dict()
    sel2 = ITESelector(ITEConfig(), 40, torch.device("cpu")); sel2.load_state_dict(st)
    assert sel2.calls == 2 and torch.equal(sel2.row_keep, sel.row_keep)


def test_full_population_stats_mode():
    """stats=full (Table 6 'no optimisation'): band = exact mean/var of every row's ITE norm, and each
    row's keep flag is that band applied to its own block-wise norm."""
    net, params, xr, yr, xs, ys = _tiny(4)
    from types import SimpleNamespace

    from dfdistill.data.real import RealData
    from dfdistill.pruning.ite import batch_ite_norms

    real = RealData(images=xr, labels=yr, num_classes=1, class_names=["a"], mean=(0.0,), std=(1.0,))
    D = SimpleNamespace(cfg=SimpleNamespace(dis_metric="ours"), ctx=SimpleNamespace(real=real))
    sel = ITESelector(ITEConfig(beta=0.4, stats="full", mode="exact", chunk=8), num_rows=20, device=torch.device("cpu"))
    idx = torch.arange(5).view(1, 5)  # current batch = rows 0..4; blocks of 5 cover all 20 rows
    w = sel.weights(D, net, params, xr[None, :5], yr[None, :5], idx, None, xs[None], ys[None])
    ref = torch.cat([batch_ite_norms(D, net, params, xr[None, a:a + 5], yr[None, a:a + 5], None, xs[None], ys[None],
                                     "exact", 8)[0] for a in range(0, 20, 5)])
    assert abs(sel.band.mean - float(ref.mean())) < 1e-5
    assert abs(sel.band.var - float(ref.var(unbiased=False))) < 1e-5
    assert torch.equal(sel.row_keep, sel.band.keep(ref))
    assert torch.equal(w[0].bool(), sel.row_keep[:5]) and 0 < int(sel.row_keep.sum()) < 20
