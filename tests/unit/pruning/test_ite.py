"""BiLP ITE: Taylor vs exact leave-one-out ranking, running-stat quantile band, selector shape."""

import pytest
import torch

from dfdistill.data.real import RealData
from dfdistill.methods.matching import (detached_params, dm_meta_loss, gm_meta_loss, gm_objective,
                                        per_sample_param_grads)
from dfdistill.models import build_model
from dfdistill.pruning.ite import ITEConfig, ITESelector, RunningNormalBand, ite_vectors


def _rows(n: int, images=None, labels=None) -> RealData:
    """A RealData of n rows for the selector's per-row state (images only matter for stats=full)."""
    images = torch.zeros(n, 1, 16, 16) if images is None else images
    labels = torch.zeros(n, dtype=torch.long) if labels is None else labels
    return RealData(images, labels, int(labels.max()) + 1, [str(c) for c in range(int(labels.max()) + 1)], (0.0,), (1.0,))


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
    sel = ITESelector(ITEConfig(beta=0.3, lazy_every=2, chunk=8), _rows(40))
    obj = gm_objective(net, params, xs[None], ys[None], "ours")

    idx = torch.arange(20).view(1, 20)
    other = torch.arange(20, 40).view(1, 20)
    sel.begin_iteration(0)
    rows, pad = sel.draw(lambda: (idx, None))
    w1 = sel.weights(xr[None], yr[None], rows, pad, obj)
    assert w1.shape == (1, 20) and set(w1.unique().tolist()) <= {0.0, 1.0} and 0 < w1.sum() < 20
    sel.begin_iteration(1)
    rows, pad = sel.draw(lambda: (other, None))  # lazy: the held batch, not a fresh draw
    assert rows is idx and pad is None
    w2 = sel.weights(xr[None] * 0, yr[None], rows, pad, obj)  # its held selection, not a new judgement
    assert torch.equal(w1, w2)
    st = sel.state_dict()
    sel2 = ITESelector(ITEConfig(lazy_every=2), _rows(40)); sel2.load_state_dict(st)
    assert sel2.calls == 2 and torch.equal(sel2.row_keep, sel.row_keep)
    sel2.begin_iteration(1)  # a resumed selector hands out the same held batch and selection
    rows, pad = sel2.draw(lambda: (other, None))
    assert torch.equal(rows, idx) and torch.equal(sel2.weights(xr[None], yr[None], rows, pad, obj), w1)
    sel.begin_iteration(2)  # refresh: the method's fresh draw, judged anew
    assert sel.draw(lambda: (other, None))[0] is other


def test_full_population_stats_mode():
    """stats=full (Table 6 'no optimisation'): band = exact mean/var of every row's ITE norm, and each
    row's keep flag is that band applied to its own block-wise norm."""
    net, params, xr, yr, xs, ys = _tiny(4)
    from dfdistill.pruning.ite import batch_ite_norms

    real = RealData(images=xr, labels=yr, num_classes=1, class_names=["a"], mean=(0.0,), std=(1.0,))
    sel = ITESelector(ITEConfig(beta=0.4, stats="full", mode="exact", chunk=8), real)
    obj = gm_objective(net, params, xs[None], ys[None], "ours")
    idx = torch.arange(5).view(1, 5)  # current batch = rows 0..4; blocks of 5 cover all 20 rows
    sel.begin_iteration(0)
    w = sel.weights(xr[None, :5], yr[None, :5], idx, None, obj)
    ref = torch.cat([batch_ite_norms(obj, xr[None, a:a + 5], yr[None, a:a + 5], None, "exact", 8)[0]
                     for a in range(0, 20, 5)])
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
    assert ITESelector(ITEConfig(), _rows(20)).chunk == 8
    assert ITESelector(ITEConfig(chunk=5), _rows(20)).chunk == 5


class _RecordingSelector:
    """Stands in for ITESelector: records each call's shapes and returns fixed weights."""

    def __init__(self, keep_first: int | None):
        self.keep_first, self.calls = keep_first, []

    def draw(self, fresh):  # no lazy hold: the method's own draw
        return fresh()

    def begin_step(self, step):
        pass

    def weights(self, xr, yr, idx, w, objective):
        self.calls.append((tuple(xr.shape[:2]), tuple(idx.shape), tuple(objective.syn.shape[:2]), int(yr[0, 0])))
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
        losses[name] = float(d.class_loss(net, 3, 0).detach())
        if sel is not None:
            assert sel.calls == [((1, 8), (1, 8), (1, 4), 3)]  # 8 real rows; ipc 1 x f^2 = 4 decoded tiles
    assert abs(losses["ones"] - losses["none"]) < 1e-6 * max(1.0, abs(losses["none"]))
    assert abs(losses["first2"] - losses["none"]) > 1e-6


def test_methods_without_real_batches_refuse_in_loop_pruning(compose_cfg):
    from dfdistill.core.errors import ConfigError
    from dfdistill.run.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=herding", "ipc=1", "pruning=ite"])  # ITE alone
    with pytest.raises(ConfigError, match="in-loop"):
        run(cfg)


def test_lazy_schedule_counts_steps_not_calls():
    """Two classes called separately (as IDC does): with lazy_every=2 both draw and are judged in step 0,
    and both get their own held batch back (by call position) in step 1, whatever the calls per step."""
    net, params, xr, yr, xs, ys = _tiny(5)
    sel = ITESelector(ITEConfig(beta=0.3, lazy_every=2, chunk=8), _rows(40))
    recomputed, drawn = [], {}
    orig = sel.band.update
    for rnd in range(2):
        sel.begin_step(rnd)
        for c in range(2):  # two "classes" (labels only name the position); fresh draws are new rows each time
            seen = []
            sel.band.update = lambda *a, seen=seen: (seen.append(1), orig(*a))
            fresh = torch.arange(10 * (2 * rnd + c), 10 * (2 * rnd + c) + 10).view(1, 10)
            idx, _ = sel.draw(lambda: (fresh, None))
            drawn[rnd, c] = idx
            sel.weights(xr[None, :10], yr[None, :10] + c, idx, None, gm_objective(net, params, xs[None], ys[None], "ours"))
            recomputed.append((rnd, c, bool(seen)))
    assert recomputed == [(0, 0, True), (0, 1, True), (1, 0, False), (1, 1, False)]
    assert drawn[1, 0] is drawn[0, 0] and drawn[1, 1] is drawn[0, 1] and not torch.equal(drawn[0, 0], drawn[0, 1])
    sel2 = ITESelector(ITEConfig(lazy_every=2), _rows(40))
    sel2.load_state_dict(sel.state_dict())
    assert sel2.calls == sel.calls == 4 and torch.equal(sel2.row_keep, sel.row_keep)


def test_selector_refuses_calls_outside_an_iteration():
    net, params, xr, yr, xs, ys = _tiny(5)
    sel = ITESelector(ITEConfig(), _rows(20))
    with pytest.raises(RuntimeError, match="begin_step"):
        sel.weights(xr[None], yr[None], torch.arange(20).view(1, 20), None, gm_objective(net, params, xs[None], ys[None], "ours"))


@pytest.mark.slow
def test_pipeline_bilp_with_random_baseline(compose_cfg):
    """BiLP runs end to end with the random-subset baseline on (the default): the baseline is drawn
    from the kept rows without the method's in-loop selector."""
    from dfdistill.run.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=dc", "ipc=1", "pruning=bilp",
                       "eval.compare_random=true"])
    rec = run(cfg)
    assert 0 <= rec["acc_mean"] <= 1 and rec["pruning"] == "bilp"
    assert rec["n_real_used"] < rec["n_real_total"]


@pytest.mark.slow
def test_bilp_before_a_method_without_real_batches_applies_its_static_half(compose_cfg):
    """BiLP+MTT (BiLP Table 7) is the preemptive pruning alone: the run goes on with the kept rows and
    the record says the in-loop half was not applied."""
    from dfdistill.run.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=random", "ipc=1", "pruning=bilp",
                       "eval.compare_random=false"])
    rec = run(cfg)
    assert rec["pruning_info"]["adaptive"].startswith("not applied")
    assert rec["n_real_used"] < rec["n_real_total"]


@pytest.mark.parametrize("method,extra,calls_per_iter", [
    ("dc", ["method.outer_loop=3", "method.inner_loop=1"], 3),  # one call per outer loop
    ("dm", [], 1),
    ("idc", ["eval=idc", "method.match_steps=2", "profile.match_steps=2", "method.n_data=16"], 2 * 10),  # one call per class and step
])
def test_lazy_schedule_is_the_same_for_every_method(compose_cfg, tmp_path, method, extra, calls_per_iter):
    """lazy_every=2 over 4 iterations: DC and DM compute ITE in iterations 0 and 2 only, on every call made
    there (the loop announces iterations). IDC's clock counts its matching steps (DREAM's interval): with
    2 steps per iteration, the first step of every iteration refreshes (10 classes) and the second reuses."""
    from dfdistill.bench.harness import build_setup, make_distiller

    cfg = compose_cfg(["profile=smoke", "dataset=digits", f"method={method}", "ipc=1", "pruning=ite",
                       "pruning.adaptive.lazy_every=2", *extra])
    setup = build_setup(cfg, tmp_path)
    d = make_distiller(setup, False)
    sel = setup.ctx.adaptive
    computed = []
    orig = sel.band.update
    sel.band.update = lambda *a: (computed.append(1), orig(*a))
    per_iter = []
    for it in range(4):
        n0, c0 = len(computed), sel.calls
        sel.begin_iteration(it)
        d.step(it)
        per_iter.append((len(computed) - n0, sel.calls - c0))
    if method == "idc":
        assert per_iter == [(calls_per_iter // 2, calls_per_iter)] * 4
    else:
        assert per_iter == [(calls_per_iter, calls_per_iter), (0, calls_per_iter)] * 2


def test_resume_with_selector_is_exact_and_records_ite_seconds(compose_cfg, tmp_path, monkeypatch):
    """A run killed after iteration 2 of 4 and resumed gives the same synthetic set as an unbroken run:
    the selector (band, row decisions) is checkpointed beside the distiller, and iteration 3 is a lazy
    one that reuses restored decisions. The record reports the time inside the selector per iteration."""
    from dfdistill.core.artifacts import load_tensor_file
    from dfdistill.methods.dc import GradientMatching
    from dfdistill.run.pipeline import run

    over = ["profile=smoke", "dataset=digits", "method=dc", "ipc=1", "pruning=ite", "pruning.adaptive.lazy_every=2",
            "method.iterations=4", "profile.iterations=4", "method.outer_loop=2", "method.inner_loop=1", "eval.compare_random=false",
            "eval.num_eval=1"]
    rec = run(compose_cfg(over, tmp_path / "straight"))
    assert rec["ite_seconds_per_iter"] > 0
    step = GradientMatching.step

    def dies_at_3(self, it):
        if it == 3:
            raise KeyboardInterrupt
        return step(self, it)

    monkeypatch.setattr(GradientMatching, "step", dies_at_3)
    with pytest.raises(KeyboardInterrupt):  # force: distil here, not reuse the straight run's finished set
        run(compose_cfg([*over, "force=true"], tmp_path / "killed"))
    ck = load_tensor_file(tmp_path / "killed" / "checkpoint.pt")
    assert ck["iteration"] == 3 and ck["adaptive"]["band"]["mean"] is not None and "adaptive" not in ck["distiller"]
    monkeypatch.setattr(GradientMatching, "step", step)
    rec2 = run(compose_cfg(over, tmp_path / "killed"))
    assert rec2["resumed_from"] == 3
    a = torch.load(tmp_path / "straight" / "synthetic.pt")["images"]
    b = torch.load(tmp_path / "killed" / "synthetic.pt")["images"]
    assert torch.equal(a, b)


def _selector_spy(sel):
    """Wrap sel.weights: records (rows, returned weights) of every call."""
    seen = []
    orig = sel.weights

    def weights(xr, yr, rows, w, objective):
        out = orig(xr, yr, rows, w, objective)
        seen.append((rows.clone(), out.detach().clone()))
        return out

    sel.weights = weights
    return seen


@pytest.mark.slow
def test_lazy_dc_reuses_the_selected_batch_until_the_next_refresh(compose_cfg, tmp_path):
    """DC, lazy_every=3: the matching step of iterations 1 and 2 gets iteration 0's rows (not a fresh draw)
    with iteration 0's selection -- pruned rows at weight 0 in the loss -- and iteration 3 draws anew."""
    from dfdistill.bench.harness import build_setup, make_distiller

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=dc", "ipc=1", "pruning=ite", "method.batch_real=16",
                       "pruning.adaptive.lazy_every=3", "pruning.adaptive.beta=0.5"])
    setup = build_setup(cfg, tmp_path)
    d = make_distiller(setup, False)
    d.init_state()
    sel = setup.ctx.adaptive
    seen = _selector_spy(sel)
    losses_w = []
    orig = d.matching_backward
    d.matching_backward = lambda net, params, xr, yr, w, *a, **k: (losses_w.append(w.clone()), orig(net, params, xr, yr, w, *a, **k))[1]
    ys = d.labels.view(d.num_classes, 1)
    for it in range(4):
        sel.begin_iteration(it)
        d.match_step(d.ctx.model_factory(it), ys, it)
    (r0, w0), (r1, w1), (r2, w2), (r3, _) = seen
    assert torch.equal(r1, r0) and torch.equal(r2, r0) and not torch.equal(r3, r0)
    assert torch.equal(w1, w0) and torch.equal(w2, w0)
    assert 0 < int(w0.sum()) < w0.numel()  # the selection prunes ...
    assert torch.equal(losses_w[1], w0) and torch.equal(losses_w[2], w0)  # ... and the loss uses it in between


def test_lazy_idc_counts_matching_steps_and_reuses_each_class_batch(compose_cfg, tmp_path):
    """IDC, lazy_every=2 on the matching-step clock: step 1 reuses each class's step-0 batch and
    selection (pruned rows weigh 0 in its gradient), step 2 draws and judges anew."""
    from dfdistill.bench.harness import build_setup, make_distiller

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=idc", "eval=idc", "ipc=1", "pruning=ite",
                       "method.batch_real=16", "pruning.adaptive.lazy_every=2", "pruning.adaptive.beta=0.5"])
    setup = build_setup(cfg, tmp_path)
    d = make_distiller(setup, False)
    d.init_state()
    sel = setup.ctx.adaptive
    seen = _selector_spy(sel)
    net = d.ctx.model_factory(0)
    for t in range(3):
        sel.begin_step(t)
        for c in range(2):
            d.class_loss(net, c, 0)
    by = {(t, c): seen[2 * t + c] for t in range(3) for c in range(2)}
    for c in range(2):
        assert torch.equal(by[1, c][0], by[0, c][0]) and torch.equal(by[1, c][1], by[0, c][1])
        assert not torch.equal(by[2, c][0], by[0, c][0])
    assert any(0 < int(w.sum()) < w.numel() for _, w in seen[:2])
