"""RFAD: NNGP-init random features, KRR against a primal ridge regression, the loss against explicit
loops, autograd vs finite differences, AdaBelief, early stopping, RFAD-NN evaluation, composition
with every pruning option, checkpoint round trip and resume."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfdistill.core.artifacts import load_tensor_file
from dfdistill.bench.harness import build_setup, make_distiller
from dfdistill.core.errors import ConfigError
from dfdistill.evaluation.finite_nn import as_targets, centred_accuracy, train_finite_nn
from dfdistill.methods.rfad import (
    RFAD, AdaBelief, krr_loss, krr_predict, random_feature_nets, random_features,
)
from dfdistill.models import build_model
from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.run.pipeline import run
from conftest import interrupted_then_resumed

SMALL = ["method.valid_per_class=6", "method.valid_models=2", "method.n_batches=2", "method.n_models=2"]
SMOKE = ["profile=smoke", "dataset=digits", "method=rfad", "ipc=1", *SMALL]


def _rfad(compose_cfg, out: Path, *overrides: str, **changes) -> RFAD:
    return make_distiller(build_setup(compose_cfg([*SMOKE, *overrides], out), out), False, **changes)


def test_gaussian_convnet_has_nngp_init_and_padding_one():
    torch.manual_seed(0)
    net = build_model("convnet_gaussian", 1, 10, 16, width=256, depth=3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding == (1, 1) for m in convs)  # RFAD pads 1 also for 1-channel input
    for m in [*convs, net.classifier]:
        fan_in = m.weight[0].numel()
        w, b = m.weight.detach(), m.bias.detach()
        assert abs(float(w.std()) / math.sqrt(2 / fan_in) - 1) < 0.05
        assert abs(float(b.std()) / 0.1 - 1) < 0.25 and abs(float(b.mean())) < 0.05
    assert not any(isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)) for m in net.modules())
    assert net.feature_dim == 256 * 2 * 2


def test_krr_equals_primal_ridge_regression_on_explicit_features():
    """Dual KRR with K = 2 phi phi^T + 0.01 equals ridge regression on psi = [sqrt(2) phi, 0.1]."""
    g = torch.Generator().manual_seed(0)
    phi_s, phi_t = torch.randn(6, 40, generator=g).double(), torch.randn(9, 40, generator=g).double()
    y_s = torch.randn(6, 3, generator=g).double()
    jit = 5e-3
    ours = krr_predict(phi_s, y_s, phi_t, jit).numpy()
    psi_s = np.concatenate([math.sqrt(2) * phi_s.double().numpy(), np.full((6, 1), 0.1)], 1)
    psi_t = np.concatenate([math.sqrt(2) * phi_t.double().numpy(), np.full((9, 1), 0.1)], 1)
    lam = jit * np.trace(psi_s @ psi_s.T) / 6
    # (psi^T psi + lam I)^-1 psi^T y = psi^T (psi psi^T + lam I)^-1 y (push-through identity)
    w = np.linalg.solve(psi_s.T @ psi_s + lam * np.eye(41), psi_s.T @ y_s.double().numpy())
    np.testing.assert_allclose(ours, psi_t @ w, rtol=1e-7, atol=1e-9)


def _explicit_loss(nets, x_s, y_s, x_t, y_t, jit, k, platt, K):
    """Per-image, per-model features; kernel by explicit sums; numpy solve; CE / MSE by hand."""
    def feats(x):
        rows = []
        for i in range(x.shape[0]):
            rows.append(np.concatenate([net.embed(x[i : i + 1])[0].double().numpy() for net in nets]))
        phi = np.stack(rows)
        return phi / math.sqrt(phi.shape[1])

    fs, ft = feats(x_s), feats(x_t)
    kern = lambda a, b: np.array([[2 * sum(a[i] * b[j]) + 0.01 for j in range(len(b))] for i in range(len(a))])
    kss = kern(fs, fs)
    kss = kss + jit * np.trace(kss) / len(fs) * np.eye(len(fs))
    pred = kern(ft, fs) @ np.linalg.solve(kss, y_s)
    if platt:
        z = math.exp(k) * pred
        return float(np.mean([np.log(np.exp(z[i]).sum()) - z[i, y_t[i]] for i in range(len(y_t))]))
    onehot = np.eye(K)[y_t] - 1.0 / K
    return float(0.5 * np.mean((onehot - pred) ** 2))


@pytest.mark.parametrize(("platt", "transform"), [(True, True), (False, False)])
def test_step_loss_matches_explicit_reference(compose_cfg, tmp_path, platt, transform):
    d = _rfad(compose_cfg, tmp_path, f"method.platt={str(platt).lower()}", "method.batch_real=5",
              f"method.learn_transform={str(transform).lower()}")
    assert (d.transform is None) != transform
    with torch.no_grad():
        d.log_temp.fill_(0.3)
        d.targets.add_(0.05 * torch.randn_like(d.targets))
        if transform:
            d.transform.add_(1e-3 * torch.randn_like(d.transform))
    nets = d.feature_nets([11, 12])
    state = d.gen.get_state()
    phi_t, y_t = d.real_features(nets)
    loss = float(d.loss_on(nets, phi_t, y_t).detach())
    gen = torch.Generator()
    gen.set_state(state)
    real = d.ctx.real
    rows = torch.cat([torch.randperm(len(real), generator=gen)[:5] for _ in range(2)])  # 2 uniform batches
    assert torch.equal(y_t, real.labels[rows])
    x_s = (d.images.detach().flatten(1) @ d.transform.detach()).view_as(d.images) if transform else d.images.detach()
    with torch.no_grad():
        ref = _explicit_loss(nets, x_s, d.targets.detach().double().numpy(), real.images[rows],
                             real.labels[rows].numpy(), d.cfg.jit, 0.3, platt, 10)
    assert abs(loss - ref) < 1e-5 * max(1.0, abs(ref))


def test_loss_gradients_match_finite_differences():
    """d loss / d (images, labels, Platt k) in float64 on a tiny case."""
    torch.manual_seed(0)
    nets = [n.double() for n in random_feature_nets([1, 2], 1, 8, width=6, depth=2, device=torch.device("cpu"))]
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = (F.one_hot(torch.tensor([0, 1, 2, 1]), 3).double() - 1 / 3).requires_grad_(True)
    k = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    xt = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    yt = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    phi_t = random_features(nets, xt)

    def f() -> torch.Tensor:
        return krr_loss(krr_predict(random_features(nets, x), y, phi_t, 5e-3), yt, 3, True, k)

    gx, gy, gk = torch.autograd.grad(f(), (x, y, k))
    eps = 1e-6
    for t, g, idx in [(x, gx, (1, 0, 3, 4)), (x, gx, (3, 0, 0, 7)), (y, gy, (2, 1)), (k, gk, ())]:
        with torch.no_grad():
            t[idx] += eps
            up = float(f())
            t[idx] -= 2 * eps
            down = float(f())
            t[idx] += eps
        assert abs((up - down) / (2 * eps) - float(g[idx])) <= 1e-6 * max(1.0, abs(float(g[idx]))), idx


def test_adabelief_follows_its_update_rule():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AdaBelief([p], lr=0.1, eps=1e-16)
    m = s = np.zeros(2)
    ref = np.array([1.0, -2.0])
    for t, g in enumerate([np.array([0.5, -1.0]), np.array([0.2, 0.3])], start=1):
        p.grad = torch.tensor(g)
        opt.step()
        m = 0.9 * m + 0.1 * g
        s = 0.999 * s + 0.001 * (g - m) ** 2 + 1e-16
        ref = ref - 0.1 / (1 - 0.9**t) * m / (np.sqrt(s) / np.sqrt(1 - 0.999**t) + 1e-16)
    np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-12)


def test_early_stopping_keeps_the_best_set_and_stops_after_patience(compose_cfg, tmp_path):
    d = _rfad(compose_cfg, tmp_path, valid_every=1, patience=2, iterations=50)
    losses = iter([5.0, 3.0, 4.0, 4.0, 4.0, 4.0])
    d.validation_loss = lambda: next(losses)
    snaps = []
    for it in range(6):
        snaps.append(d.transformed(d.images, d.transform).detach().clone())
        d.step(it)
        if d.done():
            break
    assert d.done() and it == 4 and d.best["it"] == 1 and d.best["loss"] == 3.0  # 4 > 1 + 2
    images, labels = d.train_set()
    assert torch.equal(images, snaps[1]) and labels.shape == (10, 10)  # RFAD-NN gets the learned targets


def test_rfad_nn_one_step_matches_a_hand_computed_centred_mse_step():
    torch.manual_seed(0)
    model = build_model("convnet_gaussian", 1, 3, 8, width=4, depth=2)
    start = [p.detach().clone() for p in model.parameters()]
    x, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    y = as_targets(labels, 3)
    assert torch.allclose(y.sum(1), torch.zeros(5), atol=1e-6) and y.max() == pytest.approx(2 / 3)
    # patience 1 with validation only at step 0: exactly one SGD step happens, and the returned best
    # network is the one validated at step 0 (the initial one), whose centred output is exactly zero
    best, init, _ = train_finite_nn(model, x, y, x, labels, steps=5, lr=0.1, momentum=0.9, weight_decay=0.0,
                                    batch_size=513, label_scale=8.0, centering=True, valid_every=100, patience=1,
                                    seed=0)
    assert all(torch.equal(p, q) for p, q in zip(best.parameters(), start))
    assert torch.equal(best(x) - init(x), torch.zeros(5, 3))
    ref = build_model("convnet_gaussian", 1, 3, 8, width=4, depth=2)
    with torch.no_grad():
        for p, q in zip(ref.parameters(), start):
            p.copy_(q)
    loss = ((ref(x) - ref(x).detach() - 8.0 * y) ** 2).mean() / 64.0  # f0 = f at init (centering)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for p, q, g in zip(model.parameters(), start, grads):
        torch.testing.assert_close(p.detach(), q - 0.1 * g)


def test_rfad_nn_learns_and_tests_the_best_validation_network():
    torch.manual_seed(0)
    x = torch.randn(40, 1, 8, 8)
    labels = torch.arange(40) % 2
    x[labels == 1] += 1.0
    best, init, va = train_finite_nn(build_model("convnet_gaussian", 1, 2, 8, width=16, depth=2), x, as_targets(labels, 2),
                                     x, labels, steps=60, lr=0.05, momentum=0.9, weight_decay=0.0, batch_size=16,
                                     label_scale=2.0, centering=True, valid_every=10, patience=100, seed=0)
    assert va > 0.9 and centred_accuracy(best, init, x, labels) == pytest.approx(va)


def test_rfad_nn_augments_each_batch_only_when_eval_aug_is_set():
    from types import SimpleNamespace

    from dfdistill.data.real import RealData
    from dfdistill.evaluation.finite_nn import evaluate_finite_nn

    seeds = []

    def aug(x, seed):
        seeds.append(seed)
        return x

    x, labels = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1])
    test = RealData(x, labels, 2, ["a", "b"], (0.0,), (1.0,))
    factory = lambda s: build_model("convnet_gaussian", 1, 2, 8, width=4, depth=2)
    for name, expected in (("none", 0), ("dsa", 4)):
        seeds.clear()
        ev = SimpleNamespace(num_eval=1, epochs=4, lr=0.01, momentum=0.9, weight_decay=0.0, batch_size=513,
                             test_batch_size=512, aug=name)
        evaluate_finite_nn(x, labels, test, factory, (x, labels), ev, label_scale=1.0, centering=True,
                           valid_every=100, patience=100, seed=0, augment=aug, progress=False)
        assert len(seeds) == expected and len(set(seeds)) == expected  # a fresh draw per step


def test_pipeline_evaluates_set_and_random_baseline_with_rfad_nn(compose_cfg, monkeypatch):
    import dfdistill.methods.rfad as rfad_mod

    calls = []
    real_eval = rfad_mod.evaluate_finite_nn

    def spy(images, labels, *a, **k):
        calls.append((tuple(images.shape), tuple(labels.shape)))
        return real_eval(images, labels, *a, **k)

    monkeypatch.setattr(rfad_mod, "evaluate_finite_nn", spy)
    rec = run(compose_cfg([*SMOKE, "backbone=convnet_gaussian", "eval=rfad_nn"]))
    assert calls == [((10, 1, 16, 16), (10, 10)), ((10, 1, 16, 16), (10,))]  # learned targets; class labels
    assert "random_mean" in rec and rec["backbone"] == "convnet_gaussian"


def test_pipeline_stops_early_and_records_it(compose_cfg, monkeypatch):
    seq = iter(range(100))
    monkeypatch.setattr(RFAD, "validation_loss", lambda self: float(next(seq)))  # never improves after it 0
    rec = run(compose_cfg([*SMOKE, "profile.iterations=10", "method.valid_every=1", "method.patience=2",
                           "eval.compare_random=false"]))
    assert rec["stopped_at"] == 3 and rec["iterations"] == 10


@pytest.mark.parametrize("pruning", ["none", *[pytest.param(p, marks=pytest.mark.slow) for p in ("random", "loss", "bilp")]])
def test_static_pruning_options_compose(compose_cfg, pruning):
    rec = run(compose_cfg([*SMOKE, f"pruning={pruning}", "eval.compare_random=false"]))
    assert 0.0 <= rec["acc_mean"] <= 1.0
    if pruning != "none":
        assert rec["n_real_used"] < rec["n_real_total"]
    if pruning == "bilp":  # BiLP's static half runs; its in-loop half needs class-wise real batches
        assert rec["pruning_info"]["adaptive"].startswith("not applied")


def test_in_loop_ite_is_refused_with_a_config_error(compose_cfg):
    with pytest.raises(ConfigError, match="in-loop"):
        run(compose_cfg([*SMOKE, "pruning=ite"]))


def test_checkpoint_round_trip_continues_identically(compose_cfg, tmp_path):
    a = _rfad(compose_cfg, tmp_path / "a", "method.valid_every=2", iterations=50)
    for it in range(3):
        a.step(it)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = _rfad(compose_cfg, tmp_path / "b", "method.valid_every=2", iterations=50)
    b.load_state_dict(torch.load(buf, weights_only=False))
    for name in ("images", "targets", "transform", "log_temp"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert b.best["it"] == a.best["it"] == 2 and torch.equal(a.best["images"], b.best["images"])
    assert b.opt.state[b.images]["step"] == 3
    for it in (3, 4):
        a.step(it)
        b.step(it)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets) and a.best["it"] == b.best["it"]


def test_interrupted_run_resumes_to_the_same_synthetic_set(compose_cfg, tmp_path, monkeypatch):
    args = [*SMOKE, "profile.iterations=5", "checkpoint_every=1", "stage=distill", "method.valid_every=2"]
    a, b, info = interrupted_then_resumed(compose_cfg, tmp_path, monkeypatch, RFAD, args, crash_at=3)
    assert info["resumed_from"] == 3
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])


def test_recipe_gives_the_paper_protocol_on_the_papers_datasets(resolved):
    cfg = resolved(["dataset=cifar100", "dataset.root=/x", "method=rfad", "ipc=1", "profile=full"])
    assert cfg.backbone.name == "convnet_gaussian" and cfg.backbone.width == 1024 and cfg.dataset.zca
    assert cfg.eval.name == "rfad_nn" and cfg.eval.epochs == 20000 and cfg.eval.batch_size == 513
    assert (cfg.method.eval_lr, cfg.method.nn_label_scale, cfg.method.valid_per_class) == (0.1, 8.0, 100)
    assert cfg.method.feature_width == 256 and cfg.method.batch_real == 1280
    digits = resolved(["dataset=digits", "method=rfad", "ipc=1", "profile=cpu"])
    assert digits.eval.name == "rfad_nn" and digits.backbone.name == "convnet" and digits.method.feature_width == 32
    typed = resolved(["dataset=cifar10", "dataset.root=/x", "method=rfad", "ipc=1", "eval=default"])
    assert typed.eval.name == "default"  # a typed eval= wins over the method's protocol
