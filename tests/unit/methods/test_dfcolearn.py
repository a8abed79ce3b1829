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
    obj.cfg = DFCoLearnConfig(name="dfcolearn", _target_="x", dis_metric="mse", lr_img=0.5, unroll_lr=0.5, outer_loop=1, inner_loop=1,
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


def test_filter_only_keeps_the_rows_the_soft_mask_keeps():
    """Baseline B: the filter (Phi of kappa, m = 1) keeps each class's ipc rows with the highest mask
    value, i.e. the lowest kappa (ties of a saturated Phi broken by kappa); the hard tail is never kept."""
    from dfdistill.methods.dfcolearn import filter_rows

    g = torch.Generator().manual_seed(0)
    kappa = torch.cat([torch.rand(20, generator=g), 5 + torch.rand(20, generator=g)])  # class 0 rows 0-19, class 1 20-39
    labels = torch.arange(2).repeat_interleave(20)
    ix = [torch.nonzero(labels == c).squeeze(1) for c in range(2)]
    phi = torch.cat([soft_truncation(kappa[i][None], 0.9, 0.25)[0] for i in ix])
    rows = filter_rows(phi, kappa, ix, 3, "top", g)
    expect = torch.cat([i[torch.argsort(kappa[i])[:3]] for i in ix])
    assert torch.equal(rows, expect)
    # the old rule (highest Phi * kappa) picked rows near the truncation threshold instead
    old = torch.cat([i[torch.argsort(-(phi * kappa)[i], stable=True)[:3]] for i in ix])
    assert not torch.equal(torch.sort(old).values, torch.sort(expect).values)
    drawn = filter_rows(phi, kappa, ix, 3, "sample", g)
    hard = {int(i[torch.argmax(kappa[i])]) for i in ix}  # top-10% kappa: Phi ~ 0
    assert len(set(drawn.tolist())) == 6 and not hard & set(drawn.tolist())
    assert all(int(labels[r]) == c for c in range(2) for r in drawn[3 * c:3 * c + 3])


def _dfcolearn(compose_cfg, tmp_path, extra=()):
    from dfdistill.bench.harness import build_setup, make_distiller

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=dfcolearn", "ipc=2", "method.outer_loop=2",
                       "method.inner_loop=1", *extra])
    setup = build_setup(cfg, tmp_path)
    return make_distiller(setup, False)


def test_mask_step_pairs_real_and_synthetic_under_the_same_draw(compose_cfg, tmp_path, monkeypatch):
    """The eq. 7 step reuses the last matching step's augmented real batch, and augments the synthetic
    set with exactly that step's per-class siamese draw, and nothing else."""
    from dfdistill.data.augment.class_draw import ClassDraw

    d = _dfcolearn(compose_cfg, tmp_path)
    calls = []
    apply = ClassDraw.apply

    def recording(draw, x):
        calls.append((draw.seed, len(draw), x.shape[1], x.requires_grad))
        return apply(draw, x)

    monkeypatch.setattr(ClassDraw, "apply", recording)
    captured = {}
    orig = d.mask_step
    d.mask_step = lambda last, xs, ys: (captured.setdefault("last", last), orig(last, xs, ys))[1]
    d.step(0)
    last = captured["last"]
    C = d.num_classes
    assert last.seeds is not None and len(last.seeds) == C
    seed = last.seeds.seed
    # the mask step's own call comes after the inner-loop training: the (differentiable) synthetic set
    assert calls[-1] == (seed, C, d.ctx.ipc, True)
    # the last matching step applied the same draw to the real batch and the synthetic batch
    assert calls[-3][:2] == (seed, C) and calls[-2] == (seed, C, d.ctx.ipc, True)
    assert calls[-3][2] == last.xr.shape[1]
    assert not hasattr(d, "_last")


def test_mask_objective_equals_hand_built_one_with_one_seed_per_class():
    from dfdistill.data.augment import build_augment
    from dfdistill.methods.dfcolearn import DFCoLearn, DFCoLearnConfig
    import torch.nn.functional as F
    from torch.func import functional_call

    net, xr, yr, xs, ys = _setup()
    obj = DFCoLearn.__new__(DFCoLearn)
    obj.cfg = DFCoLearnConfig(name="dfcolearn", _target_="x", dis_metric="mse", lr_img=0.5, unroll_lr=0.5, outer_loop=1, inner_loop=1,
                              l1_weight=0.0, mi_weight=0.0)
    params = {k: v.detach().requires_grad_(True) for k, v in net.named_parameters()}
    aug, seeds = build_augment("dsa", "color_scale_rotate"), [11, 12]
    xr_a = torch.stack([aug(xr[c], seed=s, siamese=True) for c, s in enumerate(seeds)])
    idx, mask = torch.arange(10).view(2, 5), torch.ones(10)
    xv, yv = xr.reshape(10, 1, 8, 8), yr.reshape(-1)
    s = xs.clone().requires_grad_(True)
    got = obj.mask_objective(mask, net, params, xr_a, yr, idx, None, None, s, ys, xv, yv,
                             syn_aug=lambda x: torch.stack([aug(x[c], seed=q, siamese=True) for c, q in enumerate(seeds)]))
    # by hand: class c's real and synthetic gradients under seed c; S' = S - lr dL/dS; theta' on S'
    s2 = xs.clone().requires_grad_(True)
    pd = {k: v.detach().requires_grad_(True) for k, v in params.items()}  # S' is not differentiated in theta
    l_gm = 0
    for c, q in enumerate(seeds):
        gr = torch.autograd.grad(F.cross_entropy(functional_call(net, pd, (xr_a[c],)), yr[c]), list(pd.values()))
        gs = torch.autograd.grad(F.cross_entropy(functional_call(net, pd, (aug(s2[c], seed=q, siamese=True),)), ys[c]),
                                 list(pd.values()), create_graph=True)
        l_gm = l_gm + sum(((a - b) ** 2).sum() for a, b in zip(gr, gs))
    g_s = torch.autograd.grad(l_gm, s2, create_graph=True)[0]
    s1 = (s2 - 0.5 * g_s).reshape(2, 1, 8, 8)
    g_t = torch.autograd.grad(F.cross_entropy(functional_call(net, params, (s1,)), ys.reshape(-1)),
                              list(params.values()), create_graph=True)
    p1 = {k: v - 0.5 * g for (k, v), g in zip(params.items(), g_t)}
    want = F.cross_entropy(functional_call(net, p1, (xv,)), yv)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    unpaired = obj.mask_objective(mask, net, params, xr_a, yr, idx, None, None, xs.clone().requires_grad_(True), ys,
                                  xv, yv)
    assert not torch.allclose(unpaired, want, rtol=1e-4, atol=1e-6)  # the old (unaugmented S) objective differs
