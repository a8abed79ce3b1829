"""BiLP ITE: Taylor vs exact leave-one-out ranking, running-stat quantile band, selector shape."""

import pytest
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


def test_chunking_does_not_change_ite():
    """The vmap chunk (auto: 8 on CPU, 64 on CUDA) is a speed knob only: every chunk size, including
    one that does not divide B, gives the same ITE vectors (non-uniform weights exercise the slicing)."""
    net, params, xr, yr, xs, ys = _tiny(3)
    g = per_sample_param_grads(net, params, xr, yr)
    w = torch.rand(20) + 0.5
    ml = gm_meta_loss(net, params, ys, "ours")
    for mode in ("taylor", "exact"):
        ref = ite_vectors(g, w, ml, xs, mode, chunk=20)
        for chunk in (1, 3, 8):
            assert torch.allclose(ite_vectors(g, w, ml, xs, mode, chunk=chunk), ref, atol=1e-6, rtol=1e-4), (mode, chunk)
    assert ITESelector(ITEConfig(), 20, torch.device("cpu")).chunk == 8
    assert ITESelector(ITEConfig(chunk=5), 20, torch.device("cpu")).chunk == 5


class _RecordingSelector:
    """Stands in for ITESelector: records each call's shapes and returns fixed weights."""

    def __init__(self, keep_first: int | None):
        self.keep_first, self.calls = keep_first, []

    def weights(self, distiller, net, params, xr, yr, idx, w, xs, ys):
        self.calls.append((tuple(xr.shape[:2]), tuple(idx.shape), tuple(xs.shape[:2]), int(ys[0, 0])))
        out = torch.ones(idx.shape)
        if self.keep_first is not None:
            out[:, self.keep_first:] = 0
        return out


def _idc(compose_cfg, tmp_path, adaptive):
    import dataclasses

    from dfdistill.bench.harness import build_setup, make_distiller

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=idc", "eval=idc", "ipc=1", "method.batch_real=8"])
    setup = build_setup(cfg, tmp_path)
    setup = dataclasses.replace(setup, ctx=dataclasses.replace(setup.ctx, adaptive=adaptive))
    return make_distiller(setup, False)


def test_idc_routes_each_class_batch_through_the_selector(compose_cfg, tmp_path):
    """IDC consults the in-loop selector once per class with that class's real batch (rows as indices),
    and its weights change the matching loss; all-ones weights give the unweighted loss."""
    net_seed = 5
    losses = {}
    for name, sel in {"none": None, "ones": _RecordingSelector(None), "first2": _RecordingSelector(2)}.items():
        d = _idc(compose_cfg, tmp_path / name, sel)
        net = d.ctx.model_factory(net_seed)
        losses[name] = float(d.class_loss(net, 3).detach())
        if sel is not None:
            assert sel.calls == [((1, 8), (1, 8), (1, 4), 3)]  # 8 real rows; ipc 1 x f^2 = 4 decoded tiles
    assert abs(losses["ones"] - losses["none"]) < 1e-6 * max(1.0, abs(losses["none"]))
    assert abs(losses["first2"] - losses["none"]) > 1e-6


def test_methods_without_real_batches_refuse_in_loop_pruning(compose_cfg):
    from dfdistill.errors import ConfigError
    from dfdistill.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=herding", "ipc=1", "pruning=ite"])  # ITE alone
    with pytest.raises(ConfigError, match="in-loop"):
        run(cfg)


def test_lazy_counts_per_class_group():
    """IDC calls the selector once per class: with lazy_every=2 every class is recomputed on its own
    1st, 3rd, ... call (a shared counter would recompute class 0 only when C is even)."""
    net, params, xr, yr, xs, ys = _tiny(5)
    sel = ITESelector(ITEConfig(beta=0.3, lazy_every=2, chunk=8), num_rows=20, device=torch.device("cpu"))
    D = type("D", (), {"cfg": type("cfg", (), {"dis_metric": "ours"})})
    recomputed = []
    orig = sel.band.update
    for rnd in range(2):
        for c in range(2):  # two "classes" (labels only name the group), rows 0-9 and 10-19
            seen = []
            sel.band.update = lambda v, seen=seen: (seen.append(1), orig(v))
            idx = torch.arange(10 * c, 10 * c + 10).view(1, 10)
            sel.weights(D, net, params, xr[None, :10], yr[None, :10], idx, None, xs[None], ys[None] + c)
            recomputed.append((rnd, c, bool(seen)))
    assert recomputed == [(0, 0, True), (0, 1, True), (1, 0, False), (1, 1, False)]
    assert sel.group_calls == {"0": 2, "1": 2}
    sel2 = ITESelector(ITEConfig(lazy_every=2), 20, torch.device("cpu"))
    sel2.load_state_dict(sel.state_dict())
    assert sel2.group_calls == sel.group_calls


@pytest.mark.slow
def test_pipeline_bilp_with_random_baseline(compose_cfg):
    """BiLP runs end to end with the random-subset baseline on (the default): the baseline is drawn
    from the kept rows without the method's in-loop selector."""
    from dfdistill.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=dc", "ipc=1", "pruning=bilp",
                       "eval.compare_random=true"])
    rec = run(cfg)
    assert 0 <= rec["acc_mean"] <= 1 and rec["pruning"] == "bilp"
    assert rec["n_real_used"] < rec["n_real_total"]


@pytest.mark.slow
def test_bilp_before_a_method_without_real_batches_applies_its_static_half(compose_cfg):
    """BiLP+MTT (BiLP Table 7) is the preemptive pruning alone: the run goes on with the kept rows and
    the record says the in-loop half was not applied."""
    from dfdistill.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=random", "ipc=1", "pruning=bilp",
                       "eval.compare_random=false"])
    rec = run(cfg)
    assert rec["pruning_info"]["adaptive"].startswith("not applied")
    assert rec["n_real_used"] < rec["n_real_total"]
